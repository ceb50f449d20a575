//! Mailbox addresses as the relay sends them on: the wire form of an
//! address smtp-proto parsed. No I/O.
//!
//! smtp-proto hands over a quoted local part without its quotes and
//! escapes, so `<"victim@example.org> NOTIFY=SUCCESS ORCPT=rfc822;"q@x>`
//! came out as `victim@example.org> NOTIFY=SUCCESS ORCPT=rfc822;q@x`, and
//! writing that between `<` and `>` upstream turned the client's local
//! part into ESMTP parameters (and recorded a recipient other than the
//! one delivered to). [`wire_form`] quotes again what needs quoting
//! (RFC 5321 §4.1.2) and refuses what cannot be written safely.

/// Why an address cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAddress {
    /// A control character (NUL, CR, LF, DEL...), quoted or not.
    Control,
    /// The domain is not a host name (after the parser dropped quotes, it
    /// could hold spaces or '>').
    Domain,
}

/// The address to write between `<` and `>` (and to record): a local part
/// that is not a dot-string is quoted, with `"` and `\` escaped; UTF-8 is
/// kept (SMTPUTF8, RFC 6531). The null path stays empty.
pub fn wire_form(parsed: &str) -> Result<String, BadAddress> {
    if parsed.chars().any(|c| c < ' ' || c == '\x7f') {
        return Err(BadAddress::Control);
    }
    let Some((local, domain)) = parsed.rsplit_once('@') else {
        // smtp-proto gives "" for <> and <postmaster> only.
        return Ok(parsed.to_owned());
    };
    if !is_domain(domain) {
        return Err(BadAddress::Domain);
    }
    if is_dot_string(local) {
        return Ok(parsed.to_owned());
    }
    let mut out = String::with_capacity(parsed.len() + 4);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"@");
    out.push_str(domain);
    Ok(out)
}

/// RFC 5321 Dot-string, with UTF-8 allowed in atoms (RFC 6531).
fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// A host name of letters, digits and hyphens (or UTF-8 U-labels).
fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_utf8_addresses_stay_as_they_are() {
        for a in [
            "bob@example.com",
            "a.b+tag@x.test",
            "josé@exämple.test",
            "用户@例子.广告",
            "",
        ] {
            assert_eq!(wire_form(a).as_deref(), Ok(a));
        }
    }

    #[test]
    fn local_parts_that_need_it_are_quoted_again() {
        assert_eq!(
            wire_form("victim@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;q@example.net")
                .unwrap(),
            "\"victim@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;q\"@example.net"
        );
        assert_eq!(wire_form("john doe@x.test").unwrap(), "\"john doe\"@x.test");
        assert_eq!(wire_form(".a..b.@x.test").unwrap(), "\".a..b.\"@x.test");
        assert_eq!(
            wire_form("a\"b\\c@x.test").unwrap(),
            "\"a\\\"b\\\\c\"@x.test"
        );
    }

    #[test]
    fn control_characters_and_odd_domains_are_refused() {
        assert_eq!(wire_form("a\0b@x.test"), Err(BadAddress::Control));
        assert_eq!(wire_form("a@x.test\r\nRSET"), Err(BadAddress::Control));
        assert_eq!(wire_form("a@b> NOTIFY=NEVER"), Err(BadAddress::Domain));
        assert_eq!(wire_form("a@b..c"), Err(BadAddress::Domain));
    }
}
