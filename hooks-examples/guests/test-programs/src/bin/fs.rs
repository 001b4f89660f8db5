//! Filesystem probe: `fs read PATH` | `fs write PATH TEXT`. Prints `ok ...` and exits 0, or prints `denied: ERR`
//! and exits 1.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["read", path] => std::fs::read_to_string(path)
            .map(|s| format!("ok read {} bytes: {}", s.len(), s.trim())),
        ["write", path, text] => std::fs::write(path, text).map(|()| format!("ok wrote {path}")),
        other => {
            eprintln!("usage: fs read PATH | fs write PATH TEXT (got {other:?})");
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
