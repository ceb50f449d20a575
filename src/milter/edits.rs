//! From a rewritten message back to milter edits, no I/O: the header
//! fields the rewrite removed (`X-LM-*`) or changed (a top-level HTML
//! part's Content-Transfer-Encoding) become SMFIR_CHGHEADER with the index
//! of the field among those of its name, a field it inserted becomes
//! SMFIR_ADDHEADER, and a changed body becomes SMFIR_REPLBODY chunks.
//!
//! The rewrite only removes, changes or inserts whole fields and never
//! reorders them, so one walk over both field lists finds every edit.

use super::codec::{MAX_BODY_CHUNK, Response};
use super::session::Field;

/// The edits that turn (`fields`, `body`) into `rewritten` (the bytes
/// [`super::session::Finished::message`] gave, rewritten). Header edits
/// come first, last field first (so a deletion never shifts the index of
/// an edit still to come), then the whole new body: Postfix takes the body
/// replacement only in one run of packets.
pub fn plan(
    fields: &[Field],
    body: &[u8],
    leading_space: bool,
    rewritten: &[u8],
) -> Result<Vec<Response>, &'static str> {
    let (mut out_fields, out_body) =
        split(rewritten).ok_or("rewritten message has no header end")?;
    // A DKIM-Signature the signing step put on top (`dkim::sign`) is
    // appended instead: a signature may stand anywhere in the header.
    let signatures = new_signatures(fields, &out_fields);
    let signed: Vec<Field> = out_fields.drain(..signatures).collect();
    out_fields.extend(signed);
    let mut edits = Vec::new();
    let mut j = 0;
    for (i, field) in fields.iter().enumerate() {
        let index = 1 + fields[..i]
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(&field.name))
            .count();
        match out_fields.get(j) {
            Some(out)
                if out.name == field.name && *out.value == *as_rebuilt(field, leading_space) =>
            {
                j += 1
            }
            Some(out) if out.name.eq_ignore_ascii_case(&field.name) => {
                edits.push(change(index, field, &out.value, leading_space)?);
                j += 1;
            }
            _ => edits.push(change(index, field, b"", leading_space)?),
        }
    }
    edits.reverse();
    for added in &out_fields[j..] {
        edits.push(Response::AddHeader {
            name: text(&added.name)?,
            value: value(&added.value, leading_space)?,
        });
    }
    if out_body != body {
        for chunk in out_body.chunks(MAX_BODY_CHUNK) {
            edits.push(Response::ReplaceBody(chunk.to_vec()));
        }
    }
    Ok(edits)
}

/// How many leading DKIM-Signature fields of `out` are new: more than the
/// original has at its top (those are replaced in place).
fn new_signatures(fields: &[Field], out: &[Field]) -> usize {
    let leading = |fs: &[Field]| {
        fs.iter()
            .take_while(|f| f.name.eq_ignore_ascii_case(b"dkim-signature"))
            .count()
    };
    leading(out).saturating_sub(leading(fields))
}

/// The value as `Finished::message` wrote it: without HDR_LEADSPC the MTA
/// ate the space after the colon, and the message has it back.
fn as_rebuilt(field: &Field, leading_space: bool) -> std::borrow::Cow<'_, [u8]> {
    if leading_space || field.value.is_empty() {
        std::borrow::Cow::Borrowed(&field.value)
    } else {
        let mut v = Vec::with_capacity(field.value.len() + 1);
        v.push(b' ');
        v.extend_from_slice(&field.value);
        std::borrow::Cow::Owned(v)
    }
}

/// Changes (or, with an empty value, deletes) the `index`th field named as
/// `field` is.
fn change(
    index: usize,
    field: &Field,
    new_value: &[u8],
    leading_space: bool,
) -> Result<Response, &'static str> {
    Ok(Response::ChangeHeader {
        index: u32::try_from(index).map_err(|_| "too many header fields")?,
        name: text(&field.name)?,
        value: if new_value.is_empty() {
            String::new()
        } else {
            value(new_value, leading_space)?
        },
    })
}

/// A value as the MTA takes it: folded lines joined by LF; without
/// HDR_LEADSPC the MTA puts the space after the colon itself.
fn value(v: &[u8], leading_space: bool) -> Result<String, &'static str> {
    let v = if leading_space {
        v
    } else {
        v.strip_prefix(b" ").unwrap_or(v)
    };
    Ok(text(v)?.replace("\r\n", "\n"))
}

fn text(b: &[u8]) -> Result<String, &'static str> {
    let s = std::str::from_utf8(b).map_err(|_| "header field is not UTF-8")?;
    if s.contains('\0') {
        return Err("header field has a NUL");
    }
    Ok(s.to_owned())
}

/// The header fields and the body of a message with CRLF line ends.
fn split(message: &[u8]) -> Option<(Vec<Field>, &[u8])> {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    loop {
        let end = pos + memchr::memmem::find(&message[pos..], b"\r\n")?;
        let line = &message[pos..end];
        pos = end + 2;
        if line.is_empty() {
            return Some((fields, &message[pos..]));
        }
        match (line[0], fields.last_mut()) {
            (b' ' | b'\t', Some(last)) => {
                last.value.extend_from_slice(b"\r\n");
                last.value.extend_from_slice(line);
            }
            _ => {
                let colon = memchr::memchr(b':', line)?;
                fields.push(Field {
                    name: line[..colon].to_vec(),
                    value: line[colon + 1..].to_vec(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> Field {
        Field {
            name: name.into(),
            value: value.into(),
        }
    }

    fn message(fields: &[Field], body: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(&f.name);
            out.push(b':');
            out.extend_from_slice(&f.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }

    #[test]
    fn unchanged_message_needs_no_edit() {
        let fields = [field("Subject", " a\r\n b"), field("To", " x@y")];
        let m = message(&fields, "body\r\n");
        assert_eq!(plan(&fields, b"body\r\n", true, &m), Ok(vec![]));
    }

    #[test]
    fn without_leading_space_an_unchanged_message_needs_no_edit_either() {
        // The MTA sent "hi" for "Subject: hi"; the message was rebuilt with
        // the space back.
        let fields = [field("Subject", "hi"), field("X-LM-Tag", "t")];
        let out = [field("Subject", " hi")];
        assert_eq!(
            plan(&fields, b"b", false, &message(&out, "b")),
            Ok(vec![Response::ChangeHeader {
                index: 1,
                name: "X-LM-Tag".into(),
                value: String::new()
            }])
        );
    }

    #[test]
    fn removed_fields_are_deleted_by_index_last_first() {
        let fields = [
            field("X-LM-Tag", " a"),
            field("Subject", " s"),
            field("x-lm-tag", " b"),
            field("X-LM-Override-Track-Opens", " false"),
            field("X-Other", " kept"),
        ];
        let kept = [field("Subject", " s"), field("X-Other", " kept")];
        let edits = plan(&fields, b"b\r\n", true, &message(&kept, "B\r\n")).unwrap();
        let del = |index, name: &str| Response::ChangeHeader {
            index,
            name: name.into(),
            value: String::new(),
        };
        assert_eq!(
            edits,
            [
                del(1, "X-LM-Override-Track-Opens"),
                del(2, "x-lm-tag"),
                del(1, "X-LM-Tag"),
                Response::ReplaceBody(b"B\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn a_changed_transfer_encoding_is_changed_in_place() {
        let fields = [
            field("Content-Type", " text/html"),
            field("Content-Transfer-Encoding", " 8bit"),
        ];
        let out = [
            field("Content-Type", " text/html"),
            field("Content-Transfer-Encoding", " quoted-printable"),
        ];
        let m = message(&out, "x=\r\n");
        assert_eq!(
            plan(&fields, b"x\r\n", true, &m).unwrap()[0],
            Response::ChangeHeader {
                index: 1,
                name: "Content-Transfer-Encoding".into(),
                value: " quoted-printable".into()
            }
        );
        // Without HDR_LEADSPC the MTA adds the space itself.
        assert_eq!(
            plan(&fields, b"x\r\n", false, &m).unwrap()[0],
            Response::ChangeHeader {
                index: 1,
                name: "Content-Transfer-Encoding".into(),
                value: "quoted-printable".into()
            }
        );
    }

    #[test]
    fn an_inserted_field_is_added() {
        let fields = [field("Content-Type", " text/html")];
        let out = [
            field("Content-Type", " text/html"),
            field("Content-Transfer-Encoding", " quoted-printable"),
        ];
        assert_eq!(
            plan(&fields, b"x\r\n", true, &message(&out, "y\r\n")).unwrap(),
            [
                Response::AddHeader {
                    name: "Content-Transfer-Encoding".into(),
                    value: " quoted-printable".into()
                },
                Response::ReplaceBody(b"y\r\n".to_vec())
            ]
        );
    }

    #[test]
    fn a_long_body_goes_in_chunks_of_at_most_65535() {
        let body = "a".repeat(MAX_BODY_CHUNK * 2 + 10);
        let edits = plan(&[], b"", true, &message(&[], &body)).unwrap();
        let sizes: Vec<usize> = edits
            .iter()
            .map(|e| match e {
                Response::ReplaceBody(c) => c.len(),
                _ => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(sizes, [MAX_BODY_CHUNK, MAX_BODY_CHUNK, 10]);
    }

    #[test]
    fn a_folded_value_goes_back_with_lf() {
        let fields = [field("Content-Transfer-Encoding", " 8bit")];
        let out = [field("Content-Transfer-Encoding", "\r\n quoted-printable")];
        assert_eq!(
            plan(&fields, b"", true, &message(&out, "")).unwrap(),
            [Response::ChangeHeader {
                index: 1,
                name: "Content-Transfer-Encoding".into(),
                value: "\n quoted-printable".into()
            }]
        );
    }

    #[test]
    fn a_new_signature_on_top_is_added_and_a_replaced_one_changed_in_place() {
        let fields = [field("Received", " by mx"), field("From", " a@example.com")];
        let signed = [
            field("DKIM-Signature", " v=1; d=example.com; b=new"),
            field("Received", " by mx"),
            field("From", " a@example.com"),
        ];
        assert_eq!(
            plan(&fields, b"x\r\n", true, &message(&signed, "x\r\n")).unwrap(),
            [Response::AddHeader {
                name: "DKIM-Signature".into(),
                value: " v=1; d=example.com; b=new".into()
            }]
        );
        // The sender's own signature (our domain) is replaced where it is.
        let fields = [
            field("DKIM-Signature", " v=1; d=example.com; b=old"),
            fields[1].clone(),
        ];
        let resigned = [signed[0].clone(), signed[2].clone()];
        assert_eq!(
            plan(&fields, b"x\r\n", true, &message(&resigned, "x\r\n")).unwrap(),
            [Response::ChangeHeader {
                index: 1,
                name: "DKIM-Signature".into(),
                value: " v=1; d=example.com; b=new".into()
            }]
        );
    }
}
