//! A scripted upstream SMTP server on a real socket, for the failures a
//! real MTA cannot be made to show on cue: refusing chosen recipients or
//! DATA, dropping the connection mid-DATA, stalling past a timeout. It
//! speaks enough SMTP for trackrelay and records what it accepted.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does.
#[derive(Clone, Default)]
pub struct Script {
    /// Reply line for RCPT TO of these addresses (default 250).
    pub rcpt: HashMap<String, String>,
    /// Reply to the DATA command itself instead of 354.
    pub data_command: Option<String>,
    /// Final replies after the message, by DATA number (0-based); default 250.
    pub data_final: HashMap<usize, String>,
    /// Close the connection after this many bytes of message (by DATA number).
    pub drop_mid_data: Option<usize>,
    /// Never answer the end of the message (by DATA number).
    pub stall_on_data: Option<usize>,
}

/// One message the fake accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    /// Every DATA attempt, accepted or not.
    pub data_count: Arc<Mutex<usize>>,
}

impl FakeUpstream {
    pub async fn start(script: Script) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let data_count = Arc::new(Mutex::new(0));
        let state = (Arc::new(script), accepted.clone(), data_count.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = session(stream, &state.0, &state.1, &state.2).await;
                });
            }
        });
        FakeUpstream {
            addr,
            accepted,
            data_count,
        }
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn session(
    stream: TcpStream,
    script: &Script,
    accepted: &Mutex<Vec<Accepted>>,
    data_count: &Mutex<usize>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-fake.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 100000000".to_string()
        } else if upper.starts_with("MAIL FROM:") {
            from = addr_of(&line);
            to.clear();
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = addr_of(&line);
            let reply = script
                .rcpt
                .get(&rcpt)
                .cloned()
                .unwrap_or_else(|| "250 2.1.5 Ok".into());
            if reply.starts_with('2') {
                to.push(rcpt);
            }
            reply
        } else if upper.starts_with("DATA") {
            if let Some(r) = &script.data_command {
                r.clone()
            } else {
                let n = {
                    let mut c = data_count.lock().unwrap();
                    *c += 1;
                    *c - 1
                };
                write.write_all(b"354 go ahead\r\n").await?;
                let Some(data) =
                    read_data(&mut read, script.drop_mid_data.filter(|_| true), n, script).await?
                else {
                    return Ok(()); // dropped on purpose
                };
                if script.stall_on_data == Some(n) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let reply = script
                    .data_final
                    .get(&n)
                    .cloned()
                    .unwrap_or_else(|| "250 2.0.0 Ok: queued".into());
                if reply.starts_with('2') {
                    accepted.lock().unwrap().push(Accepted {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                    });
                }
                reply
            }
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            "250 2.0.0 Ok".into()
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "250 2.0.0 Ok".into()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// Reads the message up to CRLF.CRLF, undoing dot-stuffing. `None` when
/// the script says to drop the connection part-way.
async fn read_data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    drop_after: Option<usize>,
    n: usize,
    script: &Script,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        if line == b".\r\n" {
            return Ok(Some(data));
        }
        let unstuffed = if line.starts_with(b"..") {
            &line[1..]
        } else {
            &line[..]
        };
        data.extend_from_slice(unstuffed);
        if let Some(limit) = drop_after
            && n == 0
            && data.len() >= limit
            && script.drop_mid_data.is_some()
        {
            // Read what is in flight, then vanish.
            let mut sink = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(20), read.read(&mut sink)).await;
            return Ok(None);
        }
    }
}

fn addr_of(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.find('>').unwrap_or(line.len());
    line[start..end].to_string()
}
