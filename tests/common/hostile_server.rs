//! A tiny hostile HTTP server on loopback: it answers every request with what a test
//! chose (a status, and a fixed body or one that never ends), ignoring what was asked.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// What the server sends after its status line and headers.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes, with a content-length.
    Fixed(Vec<u8>),
    /// This chunk repeated forever (no content-length; it never closes by itself).
    Endless(Vec<u8>),
}

/// Starts the server; returns `http://127.0.0.1:PORT`. It serves until the process ends.
pub fn start(status: u16, content_type: &'static str, body: Body) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                let mut sink = vec![0u8; len];
                let _ = std::io::Read::read_exact(&mut r, &mut sink);
                let _ = match &body {
                    Body::Fixed(b) => write!(
                        conn,
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        b.len()
                    )
                    .and_then(|()| conn.write_all(b)),
                    Body::Endless(chunk) => write!(
                        conn,
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n"
                    )
                    .and_then(|()| loop {
                        conn.write_all(chunk)?;
                    }),
                };
            });
        }
    });
    url
}
