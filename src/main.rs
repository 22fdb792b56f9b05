//! The `cairn` binary: hands over to [`cairn::cli`].

fn main() -> std::process::ExitCode {
    cairn::cli::main()
}
