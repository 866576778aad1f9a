//! A demo backend for otpgate: it has no auth code and shows what reached it.
//!
//! `cargo run --example demo_upstream -- [ADDR] [NAME]` (default
//! `127.0.0.1:9001 demo`).

mod echo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let name = args.next().unwrap_or_else(|| "demo".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("demo upstream {name:?} listening on http://{addr}");
    echo::serve(listener, name).await;
    Ok(())
}
