//! Carrying out what several instances of one host stage ([`super::ResourceKind::stage`]) in one
//! go: every stage's short commands (mkdir, chmod, useradd) in one remote command
//! ([`run_batched`]), then every file in one more ([`write_files_atomic`]), then one `systemctl
//! daemon-reload` for all the units among them, however many there are. Each instance still
//! gets its own result: a command or a file that fails fails only the instance that staged it.

use super::ApplyError;
use crate::transport::{FileWrite, Transport, argv, run_batched, write_files_atomic};

/// What one instance's change does on its host, for the executor to do with the rest of its
/// wave: first the commands, in order, then the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staged {
    /// Short commands (argv), run in order until one fails, before the files.
    pub commands: Vec<Vec<String>>,
    /// The files, written atomically in this order (temp files first, then the renames).
    pub files: Vec<FileWrite>,
    /// systemd must re-read its unit files once these are written (a unit file changed).
    pub daemon_reload: bool,
}

impl Staged {
    /// A stage of short commands only.
    pub fn commands(commands: Vec<Vec<String>>) -> Self {
        Self { commands, ..Self::default() }
    }
}

/// Runs `commands` one after the other until one fails: a change carried out on its own.
pub async fn run_all(transport: &dyn Transport, commands: &[Vec<String>]) -> Result<(), ApplyError> {
    for cmd in commands {
        super::run_checked(transport, cmd).await?;
    }
    Ok(())
}

/// Carries out every stage with at most three remote commands: the commands of all stages, the
/// files of those whose commands succeeded, and one systemd reload if any stage that got that
/// far asks for it. One result per stage, in order.
pub async fn write_staged(transport: &dyn Transport, stages: &[&Staged]) -> Vec<Result<(), ApplyError>> {
    let mut results: Vec<Result<(), ApplyError>> = stages.iter().map(|_| Ok(())).collect();
    let with_commands: Vec<usize> = (0..stages.len()).filter(|&i| !stages[i].commands.is_empty()).collect();
    let groups: Vec<Vec<Vec<String>>> = with_commands.iter().map(|&i| stages[i].commands.clone()).collect();
    match run_batched(transport, &groups).await {
        Ok(ran) => {
            for (&i, r) in with_commands.iter().zip(ran) {
                results[i] = r.map_err(ApplyError::Failed);
            }
        }
        Err(e) => fail_all(&mut results, &with_commands, &e.to_string()),
    }
    let writing: Vec<usize> = (0..stages.len()).filter(|&i| !stages[i].files.is_empty() && results[i].is_ok()).collect();
    let files: Vec<FileWrite> = writing.iter().flat_map(|&i| stages[i].files.iter().cloned()).collect();
    match write_files_atomic(transport, &files).await {
        Ok(written) => {
            let mut answers = files.iter().zip(written);
            for &i in &writing {
                results[i] = verdict(answers.by_ref().take(stages[i].files.len()));
            }
        }
        Err(e) => fail_all(&mut results, &writing, &e.to_string()),
    }
    let reload: Vec<usize> = (0..stages.len()).filter(|&i| stages[i].daemon_reload && results[i].is_ok()).collect();
    if !reload.is_empty()
        && let Err(e) = super::run_checked(transport, &argv(&["systemctl", "daemon-reload"])).await
    {
        fail_all(&mut results, &reload, &e.to_string());
    }
    results
}

/// Marks each of `which` failed with `message`.
fn fail_all(results: &mut [Result<(), ApplyError>], which: &[usize], message: &str) {
    for &i in which {
        results[i] = Err(ApplyError::Failed(message.to_string()));
    }
}

/// Carries out one stage on its own (a change applied outside a wave).
pub async fn run_alone(transport: &dyn Transport, staged: &Staged) -> Result<(), ApplyError> {
    write_staged(transport, &[staged]).await.pop().unwrap_or(Ok(()))
}

/// `Ok` when every file was written, else an error naming each that was not, with the reason.
fn verdict<'a>(answers: impl Iterator<Item = (&'a FileWrite, Result<(), String>)>) -> Result<(), ApplyError> {
    let failed: Vec<String> = answers.filter_map(|(f, r)| r.err().map(|why| format!("write {}: {why}", f.path))).collect();
    if failed.is_empty() { Ok(()) } else { Err(ApplyError::Failed(failed.join("; "))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{FileAttrs, LocalTransport};

    #[tokio::test]
    async fn each_stage_gets_the_result_of_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let file = |path: String| FileWrite { path, content: b"x".to_vec().into(), attrs: FileAttrs::default() };
        let good = Staged { files: vec![file(at("a")), file(at("b"))], ..Staged::default() };
        let bad = Staged { files: vec![file(at("c")), file(at("no/such/d"))], ..Staged::default() };
        let made = Staged { commands: vec![argv(&["mkdir", "--", &at("new")])], files: vec![file(at("new/e"))], ..Staged::default() };
        let refused = Staged { commands: vec![argv(&["false"])], files: vec![file(at("f"))], ..Staged::default() };
        let t = LocalTransport::new("local");
        let results = write_staged(&t, &[&good, &bad, &made, &refused]).await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = |i: usize| results[i].as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(err(1).starts_with(&format!("write {}: ", at("no/such/d"))), "{}", err(1));
        assert!(err(3).starts_with("`false` failed"), "{}", err(3));
        assert!(std::fs::read(at("new/e")).is_ok(), "a stage's commands run before its files");
        assert!(std::fs::read(at("f")).is_err(), "a stage whose command failed writes nothing");
        assert_eq!(t.stats().commands(), 2, "one command for every stage's commands, one for every file");
    }
}
