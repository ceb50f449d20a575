//! The `dir:` upstream: each relayed copy becomes one `.eml` file (the exact
//! bytes that would have gone to an SMTP upstream) and an `.envelope.json`
//! beside it with the envelope sender and recipients. Files appear
//! atomically (written to a temporary name, then renamed).

use std::path::PathBuf;

use uuid::Uuid;

use super::UpstreamError;
use crate::smtp::Reply;

pub struct DirConnection {
    dir: PathBuf,
    sender: String,
    recipients: Vec<String>,
}

impl DirConnection {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            sender: String::new(),
            recipients: Vec::new(),
        }
    }

    pub fn mail_from(&mut self, sender: &str) -> Reply {
        self.sender = sender.to_owned();
        self.recipients.clear();
        Reply::ok("Ok")
    }

    pub fn rcpt_to(&mut self, recipient: &str) -> Reply {
        self.recipients.push(recipient.to_owned());
        Reply::ok("Ok")
    }

    pub fn rset(&mut self) {
        self.sender.clear();
        self.recipients.clear();
    }

    pub async fn data(&mut self, message: &[u8], copy_id: Uuid) -> Result<Reply, UpstreamError> {
        let write =
            |e: std::io::Error| UpstreamError::Write(format!("{}: {e}", self.dir.display()));
        tokio::fs::create_dir_all(&self.dir).await.map_err(write)?;
        let envelope = serde_json::json!({ "from": self.sender, "to": self.recipients });
        let base = self.dir.join(copy_id.to_string());
        let tmp = base.with_extension("tmp");
        tokio::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&envelope).unwrap_or_default(),
        )
        .await
        .map_err(write)?;
        tokio::fs::rename(&tmp, base.with_extension("envelope.json"))
            .await
            .map_err(write)?;
        tokio::fs::write(&tmp, message).await.map_err(write)?;
        tokio::fs::rename(&tmp, base.with_extension("eml"))
            .await
            .map_err(write)?;
        Ok(Reply::ok(&format!("Ok: written as {copy_id}.eml")))
    }
}
