//! Tokio peer of examples/http_server.c for the HTTP plaintext benchmark.
//! Listens on 127.0.0.1:PORT.  `GET /plaintext` answers `Hello, World!` with
//! Server, Content-Type, Content-Length and a Date rebuilt once a second (the
//! whole 200 is one copy of a cached block, per thread); other paths 404,
//! other methods 405.  Keep-alive (HTTP/1.1 unless `Connection: close`),
//! pipelined requests answered in order, every response of one read batched
//! into one write_all.  One task per connection with an 8 KiB read buffer and
//! a 16 KiB write buffer, like pollen's.  The request parser below is a
//! hand-written Rust rendering of the same strict rules as
//! examples/http_parse.h (request line, token names, Host exactly once in
//! HTTP/1.1, Connection tokens, Content-Length, Transfer-Encoding), so both
//! servers do the same work per request.  No hyper.  Not done (pollen does
//! it; it only makes this peer cheaper): the 10 s idle timeout per
//! connection and the lingering drain after an error response.
//! Usage: http_server [--workers W] [--port] PORT   (W = 0: current_thread)

use pollen_bench_tokio::runtime;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RBUF: usize = 8192;
const WBUF: usize = 16384;
const MAX_RESP: usize = 512;
const BODY: &[u8] = b"Hello, World!";

struct Clock {
    sec: i64,
    date: Vec<u8>,
    ok: Vec<u8>,
}

thread_local! {
    static CLOCK: RefCell<Clock> = RefCell::new(Clock { sec: -1, date: Vec::new(), ok: Vec::new() });
}

fn refresh(k: &mut Clock) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    if now == k.sec {
        return;
    }
    k.sec = now;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t = now as libc::time_t;
    unsafe { libc::gmtime_r(&t, &mut tm) };
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    k.date = format!(
        "Date: {}, {:02} {} {:04} {:02}:{:02}:{:02} GMT\r\n",
        DAYS[(tm.tm_wday % 7) as usize], tm.tm_mday, MONTHS[(tm.tm_mon % 12) as usize],
        tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
    .into_bytes();
    let mut ok = Vec::with_capacity(256);
    ok.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: tokio\r\nContent-Type: text/plain\r\n");
    ok.extend_from_slice(format!("Content-Length: {}\r\n", BODY.len()).as_bytes());
    ok.extend_from_slice(&k.date);
    ok.extend_from_slice(b"\r\n");
    ok.extend_from_slice(BODY);
    k.ok = ok;
}

// ---- the parser (same rules as examples/http_parse.h) ----------------------
enum Parse {
    Incomplete,
    Bad,        // 400
    TooLarge,   // 431
    BadVersion, // 505
    Done(usize, Req),
}

#[derive(Default)]
struct Req {
    method: (usize, usize), // start, len into the buffer
    path: (usize, usize),
    minor: u8,
    keep_alive: bool,
    te: bool,
    content_length: u64,
}

fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}
fn vchar_or_ws(c: u8) -> bool {
    c == b' ' || c == b'\t' || (c > 0x20 && c != 0x7f)
}
fn target(c: u8) -> bool {
    c > 0x20 && c < 0x7f
}

fn parse(buf: &[u8], max_head: usize) -> Parse {
    let end = buf.len().min(max_head);
    let inc = || if buf.len() >= max_head { Parse::TooLarge } else { Parse::Incomplete };
    let mut p = 0;
    loop {
        if p < end && buf[p] == b'\n' {
            p += 1;
        } else if p + 1 < end && buf[p] == b'\r' && buf[p + 1] == b'\n' {
            p += 2;
        } else if p + 1 == end && buf[p] == b'\r' {
            return inc();
        } else {
            break;
        }
    }
    if p == end {
        return inc();
    }
    let mut r = Req::default();
    let m0 = p;
    while p < end && tchar(buf[p]) {
        p += 1;
    }
    if p == end {
        return inc();
    }
    if p == m0 || buf[p] != b' ' {
        return Parse::Bad;
    }
    r.method = (m0, p - m0);
    p += 1;
    let t0 = p;
    let mut plen = usize::MAX;
    while p < end && target(buf[p]) {
        if buf[p] == b'?' && plen == usize::MAX {
            plen = p - t0;
        }
        p += 1;
    }
    if p == end {
        return inc();
    }
    if p == t0 || buf[p] != b' ' {
        return Parse::Bad;
    }
    r.path = (t0, if plen == usize::MAX { p - t0 } else { plen });
    p += 1;
    // HTTP/d.d
    let proto = b"HTTP/";
    let mut i = 0;
    while i < 5 && p + i < end {
        if buf[p + i] != proto[i] {
            return Parse::Bad;
        }
        i += 1;
    }
    if p + 5 >= end {
        return inc();
    }
    if !buf[p + 5].is_ascii_digit() {
        return Parse::Bad;
    }
    if p + 6 >= end {
        return inc();
    }
    if buf[p + 6] != b'.' {
        return Parse::Bad;
    }
    if p + 7 >= end {
        return inc();
    }
    if !buf[p + 7].is_ascii_digit() {
        return Parse::Bad;
    }
    if p + 8 >= end {
        return inc();
    }
    let major = buf[p + 5];
    r.minor = buf[p + 7] - b'0';
    p += 8;
    if buf[p] == b'\r' {
        p += 1;
        if p == end {
            return inc();
        }
    }
    if buf[p] != b'\n' {
        return Parse::Bad;
    }
    p += 1;
    if major != b'1' {
        return Parse::BadVersion;
    }
    let (mut hosts, mut close, mut keep, mut have_cl) = (0, false, false, false);
    loop {
        if p == end {
            return inc();
        }
        if buf[p] == b'\n' {
            p += 1;
            break;
        }
        if buf[p] == b'\r' {
            if p + 1 == end {
                return inc();
            }
            if buf[p + 1] != b'\n' {
                return Parse::Bad;
            }
            p += 2;
            break;
        }
        let n0 = p;
        while p < end && tchar(buf[p]) {
            p += 1;
        }
        if p == end {
            return inc();
        }
        if p == n0 || buf[p] != b':' {
            return Parse::Bad;
        }
        let name = &buf[n0..p];
        p += 1;
        while p < end && (buf[p] == b' ' || buf[p] == b'\t') {
            p += 1;
        }
        let v0 = p;
        while p < end && vchar_or_ws(buf[p]) {
            p += 1;
        }
        if p == end {
            return inc();
        }
        let mut vend = p;
        if buf[p] == b'\r' {
            p += 1;
            if p == end {
                return inc();
            }
        }
        if buf[p] != b'\n' {
            return Parse::Bad;
        }
        p += 1;
        while vend > v0 && (buf[vend - 1] == b' ' || buf[vend - 1] == b'\t') {
            vend -= 1;
        }
        let value = &buf[v0..vend];
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for tok in value.split(|&c| c == b',') {
                    let tok = trim(tok);
                    if tok.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        keep = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if value.is_empty() {
                    return Parse::Bad;
                }
                let mut v: u64 = 0;
                for &c in value {
                    if !c.is_ascii_digit() || v > (1u64 << 53) / 10 {
                        return Parse::Bad;
                    }
                    v = v * 10 + (c - b'0') as u64;
                }
                if have_cl && v != r.content_length {
                    return Parse::Bad;
                }
                have_cl = true;
                r.content_length = v;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => r.te = true,
            _ => {}
        }
    }
    if (r.minor >= 1 && hosts != 1) || hosts > 1 {
        return Parse::Bad;
    }
    r.keep_alive = if r.minor >= 1 { !close } else { keep && !close };
    Parse::Done(p, r)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

// ---- one connection ---------------------------------------------------------
struct Conn {
    rbuf: Box<[u8; RBUF]>,
    wbuf: Vec<u8>,
    rlen: usize,
    rpos: usize,
    skip: u64,
    closing: bool,
}

impl Conn {
    fn respond(&mut self, k: &Clock, status: &str, extra: &str, body: &[u8], head_only: bool, ka10: bool) {
        let w = &mut self.wbuf;
        w.extend_from_slice(b"HTTP/1.1 ");
        w.extend_from_slice(status.as_bytes());
        w.extend_from_slice(b"\r\nServer: tokio\r\nContent-Type: text/plain\r\n");
        w.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        w.extend_from_slice(&k.date);
        w.extend_from_slice(extra.as_bytes());
        if self.closing {
            w.extend_from_slice(b"Connection: close\r\n");
        } else if ka10 {
            w.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        w.extend_from_slice(b"\r\n");
        if !head_only {
            w.extend_from_slice(body);
        }
    }

    fn fail(&mut self, k: &Clock, status: &str, body: &[u8]) {
        self.closing = true;
        self.respond(k, status, "", body, false, false);
    }

    /// Answer every complete request in rbuf, or as many as fit in wbuf
    /// (then returns true: more to do).
    fn process(&mut self) -> bool {
        CLOCK.with(|k| {
            let mut k = k.borrow_mut();
            refresh(&mut k);
            while !self.closing {
                if self.skip > 0 {
                    let take = self.skip.min((self.rlen - self.rpos) as u64);
                    self.rpos += take as usize;
                    self.skip -= take;
                    if self.skip > 0 {
                        break;
                    }
                }
                if self.rpos == self.rlen {
                    break;
                }
                if WBUF - self.wbuf.len() < MAX_RESP {
                    return true;
                }
                let base = self.rpos;
                match parse(&self.rbuf[base..self.rlen], RBUF) {
                    Parse::Incomplete => break,
                    Parse::Bad => self.fail(&k, "400 Bad Request", b"Bad Request\n"),
                    Parse::TooLarge => self.fail(&k, "431 Request Header Fields Too Large", b"Request Header Fields Too Large\n"),
                    Parse::BadVersion => self.fail(&k, "505 HTTP Version Not Supported", b"HTTP Version Not Supported\n"),
                    Parse::Done(n, r) => {
                        self.rpos += n;
                        if r.te {
                            self.fail(&k, "501 Not Implemented", b"Transfer-Encoding is not supported\n");
                            continue;
                        }
                        self.skip = r.content_length;
                        let b = &self.rbuf[base..];
                        let method = &b[r.method.0 - 0..r.method.0 + r.method.1];
                        let get = method == b"GET";
                        let head = method == b"HEAD";
                        let ka10 = r.minor == 0 && r.keep_alive;
                        if !r.keep_alive {
                            self.closing = true;
                        }
                        if &b[r.path.0..r.path.0 + r.path.1] == b"/plaintext" {
                            if get && !self.closing && r.minor >= 1 {
                                self.wbuf.extend_from_slice(&k.ok); // the hot path
                            } else if get || head {
                                self.respond(&k, "200 OK", "", BODY, head, ka10);
                            } else {
                                self.respond(&k, "405 Method Not Allowed", "Allow: GET, HEAD\r\n", b"Method Not Allowed\n", false, ka10);
                            }
                        } else {
                            self.respond(&k, "404 Not Found", "", b"Not Found\n", head, ka10);
                        }
                    }
                }
            }
            false
        })
    }
}

async fn serve(mut sock: TcpStream) {
    let _ = sock.set_nodelay(true);
    let mut c = Conn {
        rbuf: Box::new([0u8; RBUF]),
        wbuf: Vec::with_capacity(WBUF),
        rlen: 0,
        rpos: 0,
        skip: 0,
        closing: false,
    };
    loop {
        if c.rpos == c.rlen {
            c.rpos = 0;
            c.rlen = 0;
        } else if c.rpos > 0 {
            c.rbuf.copy_within(c.rpos..c.rlen, 0);
            c.rlen -= c.rpos;
            c.rpos = 0;
        }
        let n = match sock.read(&mut c.rbuf[c.rlen..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        c.rlen += n;
        loop {
            let more = c.process();
            if !c.wbuf.is_empty() {
                if sock.write_all(&c.wbuf).await.is_err() {
                    return;
                }
                c.wbuf.clear();
            }
            if !more {
                break;
            }
        }
        if c.closing {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn main() {
    let port: u16 = std::env::args()
        .last()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: http_server [--workers W] [--port] PORT");
            std::process::exit(2)
        });
    let rt = runtime();
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("tokio http server listening on 127.0.0.1:{}", port);
        // the accept loop is a spawned task (with --workers 1 every poll runs
        // on the one worker thread)
        tokio::spawn(async move {
            loop {
                if let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock));
                }
            }
        })
        .await
        .unwrap();
    });
}
