//! A real SMTP server on loopback for the email tests (`mailin-embedded`: blocking, a
//! thread pool, RFC 5321 on the wire), keeping every message it accepts. It runs for
//! the rest of the test process: the library has no stop, and a listener thread costs
//! nothing once its test is over.

use std::{
    net::{SocketAddr, TcpListener},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    /// The whole message as sent (headers and MIME parts).
    pub raw: String,
    pub accepted_at: Instant,
}

impl Received {
    /// The text, with quoted-printable soft breaks and escapes undone.
    pub fn text(&self) -> String {
        let raw = self.raw.replace("=\r\n", "").replace("=\n", "");
        let mut out = String::with_capacity(raw.len());
        let bytes = raw.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&raw[i + 1..i + 3], 16)
            {
                out.push(b as char);
                i += 3;
                continue;
            }
            out.push(bytes[i] as char);
            i += 1;
        }
        out
    }

    pub fn subject(&self) -> String {
        self.raw.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().trim().to_owned()
    }

    /// The 6-digit code: the digits after "code: ".
    pub fn code(&self) -> String {
        let text = self.text();
        let at = text.find("code: ").unwrap_or_else(|| panic!("no code in {text}")) + 6;
        text[at..at + 6].to_owned()
    }

    /// The link token: what follows `token=` in the link.
    pub fn token(&self) -> String {
        let text = self.text();
        let at = text.find("token=").unwrap_or_else(|| panic!("no link in {text}")) + 6;
        text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
    }
}

#[derive(Clone)]
struct Keeper {
    inbox: Arc<Mutex<Vec<Received>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Keeper {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let raw = String::from_utf8_lossy(&self.data).into_owned();
        self.inbox.lock().unwrap().push(Received { to: self.to.clone(), raw, accepted_at: Instant::now() });
        response::OK
    }
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    inbox: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    /// On a free loopback port.
    pub fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// On a listener the test bound (to start it on a port it kept closed until now).
    pub fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        // One thread serves one connection for its whole life, and senders keep theirs
        // open in a pool: enough threads for several instances' pools.
        let mut server = Server::new(Keeper { inbox: inbox.clone(), to: Vec::new(), data: Vec::new() });
        server
            .with_name("smtp.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_num_threads(64)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { addr, inbox }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }

    /// The messages to `address`, once there are at least `n` of them (30 s at most).
    pub async fn wait_for(&self, address: &str, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let found: Vec<Received> =
                self.messages().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address))).collect();
            if found.len() >= n {
                return found;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{n} messages to {address} never came: {found:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
