//! The `evoctl-lab` binary: everything happens in [`evoctl_lab::cli::main`].

fn main() -> std::process::ExitCode {
    evoctl_lab::cli::main()
}
