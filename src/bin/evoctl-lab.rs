//! The `evoctl-lab` binary: everything happens in [`evoctl::lab::cli::main`].

fn main() -> std::process::ExitCode {
    evoctl::lab::cli::main()
}
