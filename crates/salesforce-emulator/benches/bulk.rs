//! `cargo bench -p ferry-salesforce-emulator --bench bulk [-- ROWS]` (default 1,000,000):
//! Bulk 2.0 ingest and query-export throughput through the HTTP API, and peak RSS
//! (see `ferry_salesforce_emulator::bulk_bench`).

fn main() {
    let rows = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(1_000_000);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(ferry_salesforce_emulator::bulk_bench::run(rows)) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
