//! The `orbis` binary: loads settings (Orion-LD flags and variables included), sets up logging
//! and runs the broker until SIGINT/SIGTERM.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    // Where transparent huge pages are always on, the kernel backs mimalloc's eagerly committed
    // arena with 2 MiB pages, so a few touched bytes cost whole huge pages (12 MiB of a 25 MiB
    // idle RSS). Ordinary pages keep the broker's memory to what it uses.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    start_purge_trigger();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h" || a == "-help") {
        println!("{}", orbis::config::HELP);
        return;
    }
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = match orbis::config::load(&args, &env) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("orbis: {e}");
            std::process::exit(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&loaded.settings.log_level));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    for i in &loaded.ignored {
        tracing::warn!("accepted but not implemented by Orbis, ignored: {i}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orbis: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        let app = match orbis::startup::Application::build(loaded.settings.clone()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        tracing::info!(port = app.port(), data_dir = %loaded.settings.data_dir.display(), "orbis is listening");
        let handle = app.handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            handle.stop(true).await;
        });
        match app.run_until_stopped().await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("server failed: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}

/// mimalloc gives freed memory back to the system a second after it was freed (its purge
/// delay), but only when some thread next frees a whole page: after a burst of writes the
/// broker goes idle, and what the last second freed stayed resident (15 MiB after loading
/// 100,000 entities in batches). Freeing a huge block (beyond mimalloc's 512 KiB large objects,
/// never touched, so it costs no memory) is such an event; this thread does it twice a second.
/// The block is reserved fallibly: failing to get it is harmless.
fn start_purge_trigger() {
    let _ = std::thread::Builder::new().name("orbis-purge".into()).spawn(|| {
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let mut block: Vec<u8> = Vec::new();
            let _ = block.try_reserve_exact(64 << 20);
            drop(std::hint::black_box(block));
        }
    });
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
