//! Tokio peer of examples/echo_server.c for the TCP echo benchmark.
//! Listens on 127.0.0.1:PORT; one task per connection reads into a 16 KiB
//! buffer and writes it back with write_all, like pollen's echo task.  The
//! accept loop is a spawned task too (so with `--workers 1` every poll runs
//! on the one worker thread, not on the thread in block_on).
//! Usage: echo_server [--workers W] [--port] PORT   (W = 0: current_thread)

use pollen_bench_tokio::runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() {
    let port: u16 = std::env::args()
        .last()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: echo_server [--workers W] [--port] PORT");
            std::process::exit(2)
        });
    let rt = runtime();
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("tokio echo server listening on 127.0.0.1:{}", port);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => continue,
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if sock.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
        .await
        .unwrap();
    });
}
