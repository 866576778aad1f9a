//! The `otpgate` command: serve (default), check, migrate, keygen.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use otpgate::config::{self, Config, StorageBackend};

/// The proxy path allocates and frees many small objects per request;
/// mimalloc does that in fewer instructions than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "otpgate",
    version,
    about = "OTP login and JWT-enforcing reverse proxy"
)]
struct Cli {
    /// The YAML configuration file.
    #[arg(long, short, global = true, default_value = "config/gateway.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and print the route table.
    Check,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Generate a signing key pair: DIR/KID.pem (private, 0600) and DIR/KID.pub.pem.
    Keygen {
        /// RS256, ES256 or EdDSA.
        #[arg(long)]
        algorithm: String,
        /// The directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The key id (default: today's date, YYYY-MM-DD).
        #[arg(long)]
        kid: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Several rustls crypto backends are linked in (Pingora's, reqwest's,
    // the redis client's): name the one every TLS client here uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if let Some(Command::Keygen {
        algorithm,
        out,
        kid,
    }) = &cli.command
    {
        // Needs no config: it makes the files a config will name.
        return match keygen(algorithm, out, kid.as_deref()) {
            Ok(kid) => {
                println!("{kid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("otpgate keygen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("otpgate: {}: {e}", cli.config.display());
            return ExitCode::FAILURE;
        }
    };
    // After the config, so that it can choose how logs are written.
    init_logging();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => otpgate::gateway::serve(config),
        Command::Check => {
            print!("{}", describe(&cli.config, &config));
            Ok(())
        }
        Command::Migrate => migrate(&config),
        Command::Keygen { .. } => unreachable!("handled before the config is read"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otpgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // Pingora's per-failure health check lines are long; keep its chatter at warn.
    let filter = EnvFilter::try_from_env("OTPGATE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=error")
    });
    // Other crates' debug and trace lines print what they carry (Pingora the
    // request headers with their tokens, HTTP clients their credentials): at
    // any OTPGATE_LOG only otpgate's own lines go below info. Both filters
    // are static, so the combination keeps their cached per-callsite answers
    // and the most verbose level either allows (info by default), below
    // which the `log` macros of Pingora cost nothing.
    let own_lines_only = Targets::new()
        .with_target("otpgate", LevelFilter::TRACE)
        .with_default(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .with_filter(filter.and(own_lines_only)),
        )
        .init();
}

/// `sms_per_mobile 5/1h,10/24h  sms_per_ip off ...`: what `check` shows of `limits`.
fn limits_summary(l: &otpgate::config::LimitsConfig) -> String {
    let rates = |rates: &[otpgate::store::Rate]| {
        if rates.is_empty() {
            return "off".to_owned();
        }
        let each: Vec<String> = rates
            .iter()
            .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.window)))
            .collect();
        each.join(",")
    };
    let lockout = l.lockout.map_or("off".to_owned(), |o| {
        format!(
            "{} burned in {} -> {}",
            o.burned,
            humantime::format_duration(o.window),
            humantime::format_duration(o.duration)
        )
    });
    format!(
        "sms_per_mobile {}  sms_per_ip {}  sms_per_country {}  sms_global {}  verify_per_ip {}  lockout {lockout}  trusted_proxies {}",
        rates(&l.sms_per_mobile),
        rates(&l.sms_per_ip),
        rates(&l.sms_per_country),
        rates(&l.sms_global),
        rates(&l.verify_per_ip),
        l.trusted_proxies.len()
    )
}

fn describe(path: &std::path::Path, config: &Config) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", path.display());
    let _ = writeln!(
        out,
        "listen {}  threads {}  admin {}",
        config.server.listen,
        config.server.threads,
        config
            .server
            .admin_listen
            .map_or("-".to_owned(), |a| a.to_string())
    );
    let storage = match &config.storage.backend {
        StorageBackend::Embedded { sqlite_path } => format!("embedded ({})", sqlite_path.display()),
        StorageBackend::MysqlRedis {
            redis_key_prefix, ..
        } => format!("mysql_redis (redis prefix {redis_key_prefix:?})"),
    };
    let _ = writeln!(
        out,
        "storage {storage}  sms {}  signing {}",
        config.sms.provider.name(),
        config.jwt.signing.algorithm()
    );
    let _ = writeln!(out, "limits {}", limits_summary(&config.limits));
    let endpoints = otpgate::auth::endpoints::EndpointTable::new(&config.auth.path_prefix);
    let _ = writeln!(
        out,
        "auth endpoints {}",
        endpoints.paths().collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(out, "routes ({}):", config.routes.len());
    let _ = writeln!(
        out,
        "  {:<16} {:<20} {:<24} {:<9} {:<6} upstreams",
        "NAME", "HOST", "PREFIX", "AUTH", "STRIP"
    );
    for r in &config.routes {
        let _ = writeln!(
            out,
            "  {:<16} {:<20} {:<24} {:<9} {:<6} {}",
            r.name,
            r.host.as_deref().unwrap_or("*"),
            r.prefix,
            r.auth.as_str(),
            r.strip_prefix,
            r.upstream_names.join(", ")
        );
    }
    out
}

/// Writes `out/KID.pem` (0600) and `out/KID.pub.pem`; returns the kid.
fn keygen(algorithm: &str, out: &std::path::Path, kid: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let algorithm = otpgate::keys::KeyAlgorithm::parse(algorithm)
        .ok_or_else(|| format!("--algorithm: expected RS256, ES256 or EdDSA, got {algorithm:?}"))?;
    let kid = match kid {
        Some(kid) => kid.to_owned(),
        None => {
            humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_owned()
        }
    };
    if kid.is_empty()
        || !kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "--kid: expected letters, digits, '-', '_' or '.', got {kid:?}"
        ));
    }
    let (private, public) = otpgate::keys::generate(algorithm)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: String, text: &str, mode: u32| -> Result<(), String> {
        let path = out.join(name);
        // Never overwrite a key: a config may already name it.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    write(format!("{kid}.pem"), &private, 0o600)?;
    write(format!("{kid}.pub.pem"), &public, 0o644)?;
    Ok(kid)
}

fn migrate(config: &Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match &config.storage.backend {
        StorageBackend::Embedded { sqlite_path } => {
            runtime.block_on(otpgate::store::backend::sqlite::SqliteDb::open(sqlite_path))?;
            println!(
                "embedded storage: schema ready in {}",
                sqlite_path.display()
            );
        }
        StorageBackend::MysqlRedis {
            mysql_url,
            mysql_pool_max,
            ..
        } => {
            let applied = runtime.block_on(async {
                let db = otpgate::store::backend::mysql::MysqlDb::connect(
                    mysql_url.expose(),
                    *mysql_pool_max,
                    config.storage.timeout,
                )
                .await?;
                db.migrate().await
            })?;
            if applied.is_empty() {
                println!("mysql: schema up to date");
            } else {
                for name in applied {
                    println!("mysql: applied {name}");
                }
            }
        }
    }
    Ok(())
}
