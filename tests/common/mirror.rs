//! A loopback HTTP/1.0 mirror written with std::net, whose behaviour each
//! test scripts (fail the first requests, serve wrong bytes, close
//! mid-file...) and whose request counts are the evidence ("downloaded
//! exactly once").

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// What the mirror answers to one request.
pub enum Reply {
    File(Vec<u8>),
    Status(u16),
    /// Announce `body.len()` bytes, send the first `sent`, wait for the
    /// gate to open, then close the connection.
    Cut {
        body: Vec<u8>,
        sent: usize,
        gate: Arc<Gate>,
    },
}

/// A one-shot latch the test opens.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// A loopback HTTP/1.0 server: one thread per connection, requests counted
/// per path; `handler(path, n)` decides the reply to the n-th (1-based)
/// request for that path.
pub struct Mirror {
    pub port: u16,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Mirror {
    pub fn start(handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let counts = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (counts, handler) = (counts.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, &counts, &*handler));
            }
        });
        Mirror { port, hits }
    }

    /// Serves the files of `dir`.
    pub fn directory(dir: PathBuf) -> Mirror {
        Mirror::start(move |path, _| match std::fs::read(dir.join(path)) {
            Ok(body) => Reply::File(body),
            Err(_) => Reply::Status(404),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn serve(mut stream: TcpStream, counts: &Mutex<HashMap<String, usize>>, handler: &Handler) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
    let n = {
        let mut counts = counts.lock().unwrap();
        let count = counts.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let _ = match handler(&path, n) {
        Reply::File(body) => respond(&mut stream, 200, &body, body.len()),
        Reply::Status(code) => respond(&mut stream, code, b"", 0),
        Reply::Cut { body, sent, gate } => {
            let result = respond(&mut stream, 200, &body[..sent], body.len());
            gate.wait();
            result
        }
    };
}

fn respond(stream: &mut TcpStream, code: u16, body: &[u8], length: usize) -> std::io::Result<()> {
    write!(stream, "HTTP/1.0 {code} Whatever\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")?;
    stream.write_all(body)?;
    stream.flush()
}
