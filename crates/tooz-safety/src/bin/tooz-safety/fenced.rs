//! The fenced resource over loopback TCP: the runner serves a [`FencedRegister`], clients
//! write to it with their fencing tokens. One request per line, `RESOURCE TOKEN PROCESS`
//! (resource names carry no spaces); the answer is `A` (accepted) or `R` (refused as stale).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tooz_safety::FencedRegister;

use crate::record::now_ns;

/// Serves `register` on 127.0.0.1 (a free port); returns the address.
pub async fn serve(register: Arc<FencedRegister>) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let register = register.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match parse(&line) {
                        Some((resource, token, process)) => {
                            if register.write(resource, token, process, now_ns()) {
                                "A\n"
                            } else {
                                "R\n"
                            }
                        }
                        None => "?\n",
                    };
                    if write.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn parse(line: &str) -> Option<(&str, u64, u32)> {
    let mut parts = line.split(' ');
    let resource = parts.next()?;
    let token = parts.next()?.parse().ok()?;
    let process = parts.next()?.parse().ok()?;
    Some((resource, token, process))
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The register took it.
    Accepted,
    /// The register refused it: a larger token was seen.
    Refused,
    /// No answer in time: it may or may not have been taken.
    Unknown,
}

/// A client's connection to the register (re-made after any failure).
pub struct Writer {
    addr: std::net::SocketAddr,
    process: u32,
    stream: Option<BufReader<TcpStream>>,
}

impl Writer {
    /// A writer for `process`; connects on first use.
    pub fn new(addr: std::net::SocketAddr, process: u32) -> Self {
        Writer {
            addr,
            process,
            stream: None,
        }
    }

    /// Writes to `resource` with `token`, waiting at most one second.
    pub async fn write(&mut self, resource: &str, token: u64) -> Outcome {
        let request = format!("{resource} {token} {}\n", self.process);
        let attempt = async {
            if self.stream.is_none() {
                self.stream = Some(BufReader::new(TcpStream::connect(self.addr).await?));
            }
            let stream = self.stream.as_mut().expect("connected above");
            stream.get_mut().write_all(request.as_bytes()).await?;
            let mut answer = String::new();
            stream.read_line(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(Duration::from_secs(1), attempt).await {
            Ok(Ok(answer)) if answer == "A\n" => Outcome::Accepted,
            Ok(Ok(answer)) if answer == "R\n" => Outcome::Refused,
            _ => {
                self.stream = None;
                Outcome::Unknown
            }
        }
    }
}
