//! The `tessera` binary: parse the command line and hand off to the library.

// The allocator (docs/decisions/0020-jemalloc.md). glibc's malloc never gave back the 19 MiB
// argon2 buffers of a login burst: after the first is freed it raises its mmap threshold, so
// later buffers come from per-thread heap arenas that stay resident (954 MiB after a login
// benchmark). jemalloc, with background threads purging freed pages, returns them once the
// burst is over.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Without background threads jemalloc purges only when the program allocates, so an idle
    // server would keep what its last burst left behind.
    let purging = tikv_jemalloc_ctl::background_thread::write(true);
    let code = tessera::cli::main();
    if let Err(e) = purging {
        // After main's logging is set up would be nicer, but the allocator must be told first.
        eprintln!("warning: jemalloc background purging unavailable: {e}");
    }
    code
}
