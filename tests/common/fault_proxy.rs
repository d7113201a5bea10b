//! A loopback HTTP/1.1 proxy that passes requests to a real server, or breaks them on
//! purpose: for tests of what a client does when the network fails half-way.
//!
//! One request per client connection: the request is read whole, a rule decides its fate
//! from its method and target, and the answer (when there is one) is sent with
//! `connection: close`. Requests are forwarded byte for byte (signatures stay valid: the
//! `host` header is the proxy's, as the client signed it).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and pass the whole answer back.
    Pass,
    /// Forward it (the server acts on it), then send back the status line, the headers and
    /// only half of the body before closing: the answer is cut off mid-body.
    CutAnswer,
    /// Read it and close the connection without forwarding or answering.
    HangUp,
    /// Read the head and half the body, then reset the connection: the request is cut off.
    ResetRequest,
    /// Answer this status (500, 503, 429...) without forwarding.
    Status(u16),
    /// Wait this long, then forward and answer normally (a stalled connection).
    Stall(std::time::Duration),
    /// Forward it, then send the answer back a few bytes at a time (a slow drip).
    Drip,
}

/// One request as the proxy saw it, with what it did.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub fault: Fault,
    /// The server's whole answer (empty when not forwarded).
    pub answer: String,
}

type Rule = dyn Fn(&str, &str) -> Fault + Send + Sync + 'static;

/// A running proxy (serves until the test process ends).
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://host:port`) applying `rule(method, target)`.
    pub fn start(
        upstream: &str,
        rule: impl Fn(&str, &str) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let rule: Arc<Rule> = Arc::new(rule);
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let (upstream, rule, log) = (upstream.clone(), rule.clone(), log.clone());
                std::thread::spawn(move || serve(conn, &upstream, rule.as_ref(), &log));
            }
        });
        FaultProxy { url, seen }
    }

    /// The requests handled so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Handles the one request of `conn`, recording it in `log` before the client can see the
/// end of the exchange (a test that looks right after its call finds it there).
fn serve(mut conn: TcpStream, upstream: &str, rule: &Rule, log: &Mutex<Vec<Seen>>) -> Option<()> {
    let record = |s: &Seen| log.lock().unwrap().push(s.clone());
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut head = Vec::new();
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        if line.trim_end().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    let fault = rule(&method, &target);
    if fault == Fault::ResetRequest {
        let mut half = vec![0u8; len / 2];
        let _ = r.read_exact(&mut half);
        record(&Seen {
            method,
            target,
            fault,
            answer: String::new(),
        });
        let _ = conn.shutdown(Shutdown::Both);
        return Some(());
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    let mut seen = Seen {
        method,
        target,
        fault,
        answer: String::new(),
    };
    match fault {
        Fault::HangUp => {
            record(&seen);
            let _ = conn.shutdown(Shutdown::Both);
            return Some(());
        }
        Fault::Status(code) => {
            let body = format!("<Error><Code>Injected{code}</Code><Message>injected by the fault proxy</Message></Error>");
            record(&seen);
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Injected\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nretry-after: 0\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.shutdown(Shutdown::Both);
            return Some(());
        }
        Fault::Stall(d) => std::thread::sleep(d),
        _ => {}
    }
    let mut up = TcpStream::connect(upstream).ok()?;
    up.write_all(first.as_bytes()).ok()?;
    up.write_all(&head).ok()?;
    up.write_all(b"connection: close\r\n\r\n").ok()?;
    up.write_all(&body).ok()?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).ok()?;
    seen.answer = String::from_utf8_lossy(&answer).into_owned();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (answer_head, answer_body) = answer.split_at(split);
    let sent = match fault {
        Fault::CutAnswer => &answer_body[..answer_body.len() / 2],
        _ => answer_body,
    };
    record(&seen);
    if fault == Fault::Drip {
        for chunk in answer.chunks(256) {
            if conn.write_all(chunk).and_then(|()| conn.flush()).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = conn.shutdown(Shutdown::Both);
        return Some(());
    }
    let _ = conn
        .write_all(answer_head)
        .and_then(|()| conn.write_all(sent))
        .and_then(|()| conn.flush());
    let _ = conn.shutdown(Shutdown::Both);
    Some(())
}
