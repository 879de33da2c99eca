//! A Rust program for kiln, deployed as source: kilnd compiles it inside its
//! builder microVM (rustc, statically linked) and runs the executable as a
//! native function in exec mode: the call's body on stdin, the answer on
//! stdout, the exit status tells success, stderr is the log.
//!
//! Run as Cloudlet would, with an empty body (`kiln run --config-path
//! examples/rust/config.toml`), it prints the first Fibonacci numbers.
//! Called with a body, it answers it:
//!   "fib N"     the Fibonacci numbers up to fib(N)
//!   "env NAME"  the value of the environment variable NAME
//!   "sleep MS"  sleeps MS milliseconds first (to overrun a timeout)
//!   "fail"      a handled error: a message on stderr, exit status 3
//!   "panic"     a Rust panic (message and location on stderr, status 101)
//!   otherwise   "NAME: BODY" in capitals, NAME the function's name
use std::env;
use std::io::{self, Read};
use std::process;
use std::thread;
use std::time::Duration;

fn fibonacci(n: u32) -> Vec<u64> {
    let (mut a, mut b) = (0u64, 1u64);
    let mut out = Vec::new();
    for _ in 0..=n {
        out.push(a);
        (a, b) = (b, a.wrapping_add(b));
    }
    out
}

fn print_fibonacci(n: u32) {
    for (i, f) in fibonacci(n).iter().enumerate() {
        println!("fib({}) = {}", i, f);
    }
}

fn main() {
    let mut body = String::new();
    if let Err(e) = io::stdin().read_to_string(&mut body) {
        eprintln!("rust: cannot read the body: {}", e);
        process::exit(2);
    }
    let body = body.trim();
    eprintln!("rust: {} bytes", body.len());
    let mut words = body.split_whitespace();
    match (words.next(), words.next()) {
        (None, _) => print_fibonacci(11),
        (Some("fib"), Some(n)) => match n.parse::<u32>() {
            Ok(n) if n <= 90 => print_fibonacci(n),
            _ => {
                eprintln!("rust: fib takes a number from 0 to 90, not {:?}", n);
                process::exit(3);
            }
        },
        (Some("env"), Some(name)) => println!("{}", env::var(name).unwrap_or_default()),
        (Some("sleep"), Some(ms)) => {
            thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            println!("slept {} ms", ms);
        }
        (Some("fail"), None) => {
            eprintln!("rust: told to fail");
            process::exit(3);
        }
        (Some("panic"), None) => panic!("told to panic"),
        _ => {
            let name = env::var("KILN_FUNCTION_NAME").unwrap_or_default();
            println!("{}: {}", name, body.to_uppercase());
        }
    }
}
