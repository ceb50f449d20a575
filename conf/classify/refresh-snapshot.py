#!/usr/bin/env python3
"""Builds conf/classify/ranges.txt, the snapshot of published address
ranges compiled into trackrelay (src/classify/snapshot.rs reads it).

Each list is read from the files its publisher (or a CC0 mirror of them)
publishes, merged into the fewest CIDRs (ipaddress.collapse_addresses) and
written as one block:

    @ name class YYYY-MM-DD url
    cidr
    ...

The date is the list's own date: the creationTime of Google's JSON, else
the date of the mirror snapshot given below.

Usage:
    refresh-snapshot.py --from DIR [--out FILE]   # a directory of the published files
    refresh-snapshot.py --download [--out FILE]   # fetch the URLs below (network needed)

With --from, DIR holds the files named in LISTS (the shared corpus's
ua/ip-ranges/ has them). With --download, each list with a url is fetched
and dated today; a list without one is read from --from if given, else
left out with a message. Python 3 standard library only.
"""

import argparse
import datetime
import ipaddress
import json
import re
import sys
import urllib.request

# The day lord-alfred/ipranges @14dd971b1875 was taken (corpus SOURCES.md).
MIRROR_DATE = "2026-08-22"

# name, class (src/classify/networks.rs NetworkClass), local files, url.
# Names match [[classifier.ranges]] of conf/trackrelay.toml, so a
# downloaded file of the same name replaces the built-in list.
LISTS = [
    ("apple", "apple_relay",
     ["apple-private-relay-egress-ipv4.csv", "apple-private-relay-egress-ipv6.csv"],
     "https://mask-api.icloud.com/egress-ip-ranges.csv"),
    ("google", "image_proxy", ["google-goog.json"],
     "https://www.gstatic.com/ipranges/goog.json"),
    ("googlebot", "crawler", ["google-googlebot.json"],
     "https://developers.google.com/static/search/apis/ipranges/googlebot.json"),
    # AdsBot, Google-Safety (Gmail's link checking), ...: a hit from there
    # is a scanner, not a reader.
    ("google-special-crawlers", "security_scanner", ["google-special-crawlers.json"],
     "https://developers.google.com/static/search/apis/ipranges/special-crawlers.json"),
    ("google-user-triggered-fetchers", "crawler", ["google-user-triggered-fetchers.json"],
     "https://developers.google.com/static/search/apis/ipranges/user-triggered-fetchers.json"),
    ("google-cloud", "hosting", ["google-cloud.json"],
     "https://www.gstatic.com/ipranges/cloud.json"),
    ("aws", "hosting", ["amazon-ipv4.csv", "amazon-ipv6.csv"],
     "https://ip-ranges.amazonaws.com/ip-ranges.json"),
    # Azure service tags and Microsoft's public ranges: Outlook.com's image
    # fetches (opens) and Safe Links (clicks). The service-tag file's URL
    # changes every week, so there is no fixed url.
    ("microsoft", "mail_provider", ["microsoft-ipv4.csv", "microsoft-ipv6.csv"], None),
    ("digitalocean", "hosting", ["digitalocean-ipv4.csv", "digitalocean-ipv6.csv"],
     "https://digitalocean.com/geo/google.csv"),
    ("linode", "hosting", ["linode-ipv4.csv", "linode-ipv6.csv"],
     "https://geoip.linode.com/"),
    ("vultr", "hosting", ["vultr-ipv4.csv", "vultr-ipv6.csv"],
     "https://geofeed.constant.com/?text"),
    ("oracle", "hosting", ["oracle-ipv4.csv"],
     "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json"),
    ("github", "hosting", ["github-ipv4.csv", "github-ipv6.csv"], None),
    ("cloudflare", "vpn", ["cloudflare-ipv4.csv", "cloudflare-ipv6.csv"], None),
    ("protonvpn", "vpn", ["protonvpn-ipv4.csv"], None),
    ("openai", "crawler", ["openai-ipv4.csv"], None),
    ("bing", "crawler", ["bing-ipv4.csv"], "https://www.bing.com/toolbox/bingbot.json"),
    ("duckduckbot", "crawler", ["duckduckbot-ipv4.csv"], None),
    ("facebook", "link_preview", ["facebook-ipv4.csv", "facebook-ipv6.csv"], None),
    ("twitter", "link_preview", ["twitter-ipv4.csv", "twitter-ipv6.csv"], None),
    ("telegram", "link_preview", ["telegram-ipv4.csv", "telegram-ipv6.csv"], None),
]

JSON_KEYS = ("ipv4Prefix", "ipv6Prefix", "ip_prefix", "ipv6_prefix", "cidr")


def ranges_of(text):
    """CIDRs of a published file, and its creationTime if it has one."""
    stripped = text.lstrip("\ufeff").lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        out, date = [], None
        data = json.loads(stripped)
        if isinstance(data, dict) and isinstance(data.get("creationTime"), str):
            date = data["creationTime"][:10]
        stack = [data]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                for k, x in v.items():
                    if k in JSON_KEYS and isinstance(x, str):
                        out.append(x)
                    else:
                        stack.append(x)
            elif isinstance(v, list):
                stack.extend(v)
        return out, date
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(re.split(r"[,\s;]", line, maxsplit=1)[0].strip('"'))
    return out, None


def merged(cidrs):
    nets = {4: [], 6: []}
    for c in cidrs:
        try:
            n = ipaddress.ip_network(c, strict=False)
        except ValueError:
            continue  # a header line
        # Geofeeds carry placeholder rows (Vultr's: the documentation
        # ranges); no client comes from private or reserved space.
        if n.is_private or n.is_reserved or n.is_multicast or n.is_loopback \
                or n.is_link_local or n.is_unspecified:
            continue
        nets[n.version].append(n)
    return [str(n) for v in (4, 6) for n in ipaddress.collapse_addresses(nets[v])]


def read_local(directory, files):
    cidrs, dates = [], []
    for f in files:
        with open(f"{directory}/{f}", encoding="utf-8") as fh:
            c, d = ranges_of(fh.read())
        cidrs += c
        dates.append(d or MIRROR_DATE)
    return cidrs, min(dates)


def download(url):
    req = urllib.request.Request(url, headers={"User-Agent": "trackrelay refresh-snapshot"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read().decode("utf-8")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="directory")
    p.add_argument("--download", action="store_true")
    p.add_argument("--out", default="conf/classify/ranges.txt")
    a = p.parse_args()
    if not a.directory and not a.download:
        p.error("give --from DIR or --download")
    today = datetime.date.today().isoformat()
    blocks = []
    for name, cls, files, url in LISTS:
        if a.download and url:
            cidrs, date = ranges_of(download(url))
            date = date or today
        elif a.directory:
            cidrs, date = read_local(a.directory, files)
        else:
            print(f"{name}: no url and no --from directory; left out", file=sys.stderr)
            continue
        nets = merged(cidrs)
        if not nets:
            sys.exit(f"{name}: no address ranges")
        blocks.append((name, cls, date, url or "-", nets))
        print(f"{name}: {len(cidrs)} ranges -> {len(nets)} merged ({date})", file=sys.stderr)
    with open(a.out, "w", encoding="utf-8") as out:
        out.write("# Published address ranges built into trackrelay, merged.\n"
                  "# Written by conf/classify/refresh-snapshot.py; do not edit by hand.\n"
                  "# Sources, dates and licences: conf/classify/README.md.\n")
        for name, cls, date, url, nets in blocks:
            out.write(f"@ {name} {cls} {date} {url}\n")
            out.write("\n".join(nets) + "\n")


if __name__ == "__main__":
    main()
