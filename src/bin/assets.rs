//! `fristvakt-assets DIR`: writes the man pages (`DIR/man/fristvakt.1` and one page per
//! command, `fristvakt-deadlines.1`, …) and the shell completions (`DIR/completions/`: bash,
//! zsh, fish) from the command line's clap definition, for the Debian package
//! (`scripts/package`; Cargo.toml's `[package.metadata.deb]` installs them).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fristvakt-assets DIR");
        return ExitCode::from(2);
    };
    match write_assets(&dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fristvakt-assets: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_assets(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cli = fristvakt::cli::Cli::command();
    // One page for the program and one per command (`man fristvakt-deadlines`), as git does.
    let mut pages = vec![(String::from("fristvakt"), cli.clone())];
    let mut stack: Vec<(String, clap::Command)> =
        cli.get_subcommands().map(|c| (format!("fristvakt-{}", c.get_name()), c.clone())).collect();
    while let Some((name, command)) = stack.pop() {
        if command.get_name() == "help" {
            continue;
        }
        stack.extend(command.get_subcommands().map(|c| (format!("{name}-{}", c.get_name()), c.clone())));
        pages.push((name, command));
    }
    for (name, command) in pages {
        let path = man.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(command.name(name.clone()).version(env!("CARGO_PKG_VERSION"))).render(&mut out)?;
        std::fs::write(&path, out)?;
        written.push(path);
    }
    for (shell, file) in [(Shell::Bash, "fristvakt"), (Shell::Zsh, "_fristvakt"), (Shell::Fish, "fristvakt.fish")] {
        let path = completions.join(file);
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut fristvakt::cli::Cli::command(), "fristvakt", &mut out);
        std::fs::write(&path, out)?;
        written.push(path);
    }
    Ok(written)
}
