//! The network a hook does not have: `net connect HOST:PORT` opens a raw TCP connection and writes to it;
//! `net lookup NAME` resolves a name. Prints `ok …` and exits 0, or `denied: ERR` and exits 1. In a preview-1
//! module both fail for want of socket calls; in a component they go through `wasi:sockets`, which the sandbox
//! denies.
use std::io::Write as _;
use std::net::ToSocketAddrs as _;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["connect", addr] => std::net::TcpStream::connect(addr)
            .and_then(|mut s| s.write_all(b"hello from the sandbox\n"))
            .map(|()| format!("ok connected to {addr}")),
        ["lookup", name] => (*name, 80)
            .to_socket_addrs()
            .map(|a| format!("ok {name} resolves to {:?}", a.collect::<Vec<_>>())),
        other => {
            eprintln!("usage: net connect HOST:PORT | net lookup NAME (got {other:?})");
            std::process::exit(2);
        }
    };
    match result {
        Ok(msg) => println!("{msg}"),
        Err(e) => {
            println!("denied: {e}");
            std::process::exit(1);
        }
    }
}
