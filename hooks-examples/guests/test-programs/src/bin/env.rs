//! Prints `NAME=value` or `NAME unset` for each argument, then the number of variables it can see.
fn main() {
    for name in std::env::args().skip(1) {
        match std::env::var(&name) {
            Ok(v) => println!("{name}={v}"),
            Err(_) => println!("{name} unset"),
        }
    }
    println!("visible variables: {}", std::env::vars().count());
}
