//! `[api]`: the admin API's listener and bearer token.

use std::fmt;
use std::net::SocketAddr;

use super::{Collector, raw};

/// The admin API's listener and bearer token.
#[derive(Clone)]
pub struct Api {
    pub listen: SocketAddr,
    pub token: String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("listen", &self.listen)
            .field("token", &"<hidden>")
            .finish()
    }
}

impl Collector {
    /// `[api]`: the token must be set (it guards the admin API).
    pub(super) fn api(&mut self, raw: &raw::RawApi) -> Api {
        let listen = self.addr("api.listen", &raw.listen);
        if raw.token.trim().is_empty() {
            self.push(
                "api.token",
                "must be set: it is the bearer token of the admin API",
            );
        }
        Api {
            listen,
            token: raw.token.clone(),
        }
    }
}
