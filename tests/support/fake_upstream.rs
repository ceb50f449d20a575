//! A scripted upstream SMTP server on a real socket, for the failures a
//! real MTA cannot be made to show on cue: refusing chosen recipients or
//! DATA, dropping the connection mid-DATA, stalling past a timeout, closing
//! a connection after a message. It speaks enough SMTP for trackrelay
//! (DATA, and BDAT when told to offer CHUNKING) and records what it
//! accepted, the exact bytes on the wire, and every command.
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
    /// Offer CHUNKING (RFC 3030) and accept BDAT.
    pub chunking: bool,
    /// Close the connection right after answering each message, as a
    /// server does when its idle timeout or message limit is reached.
    pub close_after_message: bool,
    /// Answer the next command after a message with 421 and close, as a
    /// server does that says goodbye before hanging up.
    pub goodbye_after_message: bool,
}

/// One message the fake accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub from: String,
    pub to: Vec<String>,
    /// The message, dot-stuffing undone.
    pub data: Vec<u8>,
    /// What came on the wire after 354 up to and including the end mark,
    /// or the BDAT chunk.
    pub wire: Vec<u8>,
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    /// Every DATA attempt, accepted or not.
    pub data_count: Arc<Mutex<usize>>,
    /// Every command line, with the number of the connection (from 0).
    pub commands: Arc<Mutex<Vec<(usize, String)>>>,
}

impl FakeUpstream {
    pub async fn start(script: Script) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let data_count = Arc::new(Mutex::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            script,
            accepted: accepted.clone(),
            data_count: data_count.clone(),
            commands: commands.clone(),
        });
        tokio::spawn(async move {
            let mut number = 0;
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = session(stream, number, &shared).await;
                });
                number += 1;
            }
        });
        FakeUpstream {
            addr,
            accepted,
            data_count,
            commands,
        }
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    /// The command lines (without CRLF) of every connection, in order.
    pub fn commands(&self) -> Vec<(usize, String)> {
        self.commands.lock().unwrap().clone()
    }
}

struct Shared {
    script: Script,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    data_count: Arc<Mutex<usize>>,
    commands: Arc<Mutex<Vec<(usize, String)>>>,
}

impl Shared {
    /// Numbers a DATA (or BDAT) attempt.
    fn next_data(&self) -> usize {
        let mut c = self.data_count.lock().unwrap();
        *c += 1;
        *c - 1
    }
}

async fn session(stream: TcpStream, number: usize, shared: &Shared) -> std::io::Result<()> {
    let script = &shared.script;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    let mut messages = 0;
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        shared
            .commands
            .lock()
            .unwrap()
            .push((number, line.trim_end().to_string()));
        if script.goodbye_after_message && messages > 0 {
            write
                .write_all(b"421 4.4.2 fake.test closing connection\r\n")
                .await?;
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let chunking = if script.chunking {
                "250-CHUNKING\r\n"
            } else {
                ""
            };
            format!(
                "250-fake.test\r\n250-PIPELINING\r\n{chunking}250-8BITMIME\r\n250 SIZE 100000000"
            )
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
                let n = shared.next_data();
                write.write_all(b"354 go ahead\r\n").await?;
                let Some((data, wire)) =
                    read_data(&mut read, script.drop_mid_data.filter(|_| true), n, script).await?
                else {
                    return Ok(()); // dropped on purpose
                };
                if script.stall_on_data == Some(n) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let reply = finish_message(shared, n, &from, &to, data, wire);
                messages += 1;
                if script.close_after_message {
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    return Ok(());
                }
                reply
            }
        } else if script.chunking && upper.starts_with("BDAT ") {
            // Only "BDAT n LAST" (one chunk), which is what trackrelay sends.
            let size: usize = upper["BDAT ".len()..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(upper.trim_end().ends_with(" LAST"), "one BDAT LAST: {line}");
            let n = shared.next_data();
            let mut chunk = vec![0u8; size];
            read.read_exact(&mut chunk).await?;
            let reply = finish_message(shared, n, &from, &to, chunk.clone(), chunk);
            messages += 1;
            if script.close_after_message {
                write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                return Ok(());
            }
            reply
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

/// The final reply to message number `n`; an accepted one is recorded.
fn finish_message(
    shared: &Shared,
    n: usize,
    from: &str,
    to: &[String],
    data: Vec<u8>,
    wire: Vec<u8>,
) -> String {
    let reply = shared
        .script
        .data_final
        .get(&n)
        .cloned()
        .unwrap_or_else(|| "250 2.0.0 Ok: queued".into());
    if reply.starts_with('2') {
        shared.accepted.lock().unwrap().push(Accepted {
            from: from.to_string(),
            to: to.to_vec(),
            data,
            wire,
        });
    }
    reply
}

/// Reads the message up to CRLF.CRLF, undoing dot-stuffing: the message
/// and the bytes as they came. `None` when the script says to drop the
/// connection part-way.
async fn read_data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    drop_after: Option<usize>,
    n: usize,
    script: &Script,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut data = Vec::new();
    let mut wire = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        wire.extend_from_slice(&line);
        if line == b".\r\n" {
            return Ok(Some((data, wire)));
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
