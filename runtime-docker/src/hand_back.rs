//! Handing the workspace back to the caller when the container's user is
//! someone else.
//!
//! The workspace is bind-mounted, so what a command makes there belongs to
//! the container's user, with the modes the command gave it. When that
//! user is not the caller (agent mode with an image that runs as root, or a
//! `docker.user` of someone else), berth — which runs as the caller — could
//! neither read nor remove it: a `chmod 000` directory fails a checkpoint,
//! and a root-owned file keeps the session directory (and `berth gc`) from
//! removing it. So the runtime hands the tree back after every command and
//! once more at its cleanup, from an exec of its own as root in the
//! container: every entry that is not the caller's becomes the caller's
//! (its owner only: the group stays), directories get read and search for
//! their owner and files get read. Nothing else changes (but the kernel
//! drops a file's set-id bits when its owner changes).
//!
//! The exec uses only `sh`, `find`, `chown`, `chmod` and `grep`, with the
//! options busybox has, and never follows a symlink: `find` does not
//! (no `-L`), `chown -h` changes a link itself, and only entries `find`
//! saw as directories or regular files get a new mode. Its `PATH` is the
//! system's, whatever the spec says, so no program of the workspace runs
//! as root.
//!
//! Those tools name entries by paths from where they start, so they stop
//! where a path grows past `PATH_MAX`; when they report such an entry, a
//! walk in the shell (builtins only, holding the current directory as a
//! descriptor, never by path) goes down the whole tree and starts another
//! pass from each directory lying about 2,000 bytes below the last one, so
//! a tree of any depth is handed back. The walk steps only into a real
//! subdirectory of where it is (a symlink or a renamed directory is
//! skipped), and never above the workdir.
//!
//! A command that still runs (concurrent commands, processes left in the
//! background) may write while a hand-back runs; what it makes afterwards
//! is handed back after its own command and at cleanup, which first kills
//! every process the commands started, so that nothing writes while the
//! last hand-back runs. The last one also checks its work: any entry left
//! that the caller may not read or remove makes it fail, naming the entry.
//! A command writing at the same time as a hand-back after another command
//! could swap a directory for a symlink between `find`'s look and the
//! change: the change then lands on what the link names. It can only make
//! that entry the caller's and add read or search for its owner, which
//! gives the container's user nothing (the group and the bits of others
//! stay as they were).
//!
//! Every hand-back is bounded by [`HAND_BACK_TIMEOUT`]; a tree too large to
//! hand back within it fails the hand-back, and the exec is killed.

use std::time::Duration;

use session_core::runtime::{EventStream, ExecResult, ExecStatus};

use crate::exec::{self, Plan, Target};

/// How long one hand-back may run before it is killed and counts as
/// failed.
pub(crate) const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(60);

/// The script's exit status when an entry is left that the caller may not
/// read or remove (the last hand-back only); it prints that entry.
const NOT_HANDED_BACK: i32 = 10;

/// The script's exit status when its walk found itself at the workdir
/// while it thought it was deeper: a directory was moved under it.
const LOST_ITS_PLACE: i32 = 11;

/// The most of the script's output a failure message quotes.
const QUOTED_BYTES: usize = 200;

/// What the hand-back exec runs, after `u=UID verify=0|1`.
///
/// `pass DIR` hands back everything below `DIR` that its tools reach, and
/// succeeds when some entry lay too deep for them. `list` records the
/// subdirectories of the directory on descriptor 3 as `n_LEVEL_I`, so a
/// name of any bytes survives (no word is split, nothing is re-parsed).
/// `walk` goes down depth first through descriptors: 3 is where it is, 4
/// the workdir, 5 the child it opens, which it enters only if that child's
/// parent is where it stands and it is not that directory itself; `b_LEVEL`
/// counts the bytes of path since the last pass, and past 2,000 (so every
/// entry a pass must reach lies within 2,256 bytes of it, under
/// `PATH_MAX`) it starts a pass there. `command exec` keeps a failed open
/// from ending the script.
const SCRIPT: &str = r#"d=/proc/self/fd/3
bad=
pass() {
  n=$( { find "$1" ! -user "$u" -exec chown -h "$u" {} +
         find "$1" -type d ! -perm -500 -exec chmod u+rx {} +
         find "$1" -type f ! -perm -400 -exec chmod u+r {} +
       } 2>&1 >/dev/null | grep -ci 'too long' )
  if [ "$verify" = 1 ] && [ -z "$bad" ]; then
    bad=$(find "$1" \( ! -user "$u" -o -type d ! -perm -500 -o -type f ! -perm -400 \) \
          -print -quit 2>/dev/null)
  fi
  [ "${n:-0}" != 0 ]
}
list() {
  k=0
  for x in "$d"/* "$d"/.[!.]* "$d"/..?*; do
    if [ -h "$x" ] || [ ! -d "$x" ]; then continue; fi
    k=$((k+1)); eval "n_${L}_$k=\${x#\"\$d\"/}"
  done
  eval "k_$L=\$k i_$L=0"
}
walk() {
  exec 4<&3
  L=0; b_0=0; list
  while :; do
    eval "i=\$i_$L k=\$k_$L"
    if [ "$i" -lt "$k" ]; then
      i=$((i+1)); eval "i_$L=\$i; x=\$n_${L}_$i"; unset "n_${L}_$i"
      { command exec 5<"$d/$x"; } 2>/dev/null || continue
      if [ /proc/self/fd/5 -ef "$d" ] || ! [ /proc/self/fd/5/.. -ef "$d" ]; then
        exec 5<&-; continue
      fi
      exec 3<&5 5<&-
      eval "b=\$b_$L"; b=$((b + ${#x} + 1)); L=$((L+1))
      if [ "$b" -gt 2000 ]; then pass "$d/."; b=0; fi
      eval "b_$L=\$b"; list
    else
      [ "$L" = 0 ] && return 0
      [ "$d" -ef /proc/self/fd/4 ] && return 1
      { command exec 3<"$d/.."; } 2>/dev/null || return 1
      unset "k_$L" "i_$L" "b_$L"; L=$((L-1))
    fi
  done
}
exec 3<.
if pass .; then walk || exit 11; fi
if [ -n "$bad" ]; then printf '%s' "$bad"; exit 10; fi
"#;

/// When a hand-back runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Moment {
    /// After a command: other commands may still be writing, so it only
    /// hands back what it finds.
    AfterCommand,
    /// At the runtime's cleanup, once every command's processes are dead:
    /// it also checks that nothing is left the caller may not read or
    /// remove.
    AtCleanup,
}

/// The hand-back of a runtime whose container's user is not the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandBack {
    /// The caller's uid: who gets the workspace back.
    uid: u32,
}

impl HandBack {
    /// The hand-back a runtime needs when its container runs as
    /// `container_user` (the engine's `User`: empty for the image's
    /// default, root, else `uid`, `uid:gid`, `name` or `name:group`) and
    /// berth runs as `caller`. There is none when the caller is root (who
    /// may read and remove anything) or the container's user is the
    /// caller's uid; a name other than `root` cannot be told apart from
    /// the caller without the image's user database, so it gets one.
    pub(crate) fn needed(container_user: &str, caller: u32) -> Option<HandBack> {
        if caller == 0 || container_uid(container_user) == Some(caller) {
            return None;
        }
        Some(HandBack { uid: caller })
    }

    /// The uid the workspace is handed back to.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// The shell the exec runs.
    fn script(&self, moment: Moment) -> String {
        let verify = u8::from(moment == Moment::AtCleanup);
        format!("u={} verify={verify}\n{SCRIPT}", self.uid)
    }

    /// Hands the workdir of `target` back, as root, within
    /// [`HAND_BACK_TIMEOUT`]. Fails, saying why, when the exec could not
    /// run (no container, no `find` in the image), ran out of time, lost
    /// its place in a tree that moved under it, or — at cleanup — left an
    /// entry the caller may not read or remove.
    pub(crate) async fn run(&self, target: &Target, moment: Moment) -> Result<(), String> {
        let plan = Plan {
            command: self.script(moment),
            // The system's programs, whatever the spec puts first in the
            // `PATH`; byte counts in the C locale.
            env: vec![
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                "LC_ALL=C".to_owned(),
                "LD_PRELOAD=".to_owned(),
                "LD_LIBRARY_PATH=".to_owned(),
            ],
            stdin: None,
            wall_timeout: Some(HAND_BACK_TIMEOUT),
            idle_timeout: None,
            output_limit: 4096,
            spill_dir: None,
            user: Some("0".to_owned()),
        };
        let (events, mut stream) = EventStream::channel();
        let running = async move {
            let result = exec::run(target, plan, &events).await;
            drop(events);
            result
        };
        // Nobody reads its output live; the result keeps what matters.
        let drain = async { while stream.next().await.is_some() {} };
        let (result, ()) = tokio::join!(running, drain);
        outcome(&result)
    }
}

/// The uid `user` names, when that needs no user database: the empty
/// string (the image's default) and `root` are 0, a number is itself; the
/// group part is ignored.
pub(crate) fn container_uid(user: &str) -> Option<u32> {
    let name = user.split(':').next().unwrap_or_default();
    match name {
        "" | "root" => Some(0),
        _ => name.parse().ok(),
    }
}

/// What the hand-back's result says.
fn outcome(result: &ExecResult) -> Result<(), String> {
    match result.status {
        ExecStatus::Exited if result.exit_code == 0 => Ok(()),
        ExecStatus::Exited if result.exit_code == NOT_HANDED_BACK => {
            let said = result.stdout_lossy();
            let entry = said
                .strip_prefix("/proc/self/fd/3/./")
                .map_or_else(|| said.to_string(), |deep| format!("(deep) …/{deep}"));
            Err(format!(
                "{} is left that the caller may not read or remove",
                quote(&entry)
            ))
        }
        ExecStatus::Exited if result.exit_code == LOST_ITS_PLACE => {
            Err("a directory moved while the tree was walked".to_owned())
        }
        ExecStatus::TimedOut | ExecStatus::IdleTimedOut => Err(format!(
            "it did not finish within {}s",
            HAND_BACK_TIMEOUT.as_secs()
        )),
        ExecStatus::Lost => Err("the container is gone".to_owned()),
        status => {
            let said = result.stderr_lossy();
            let code = match status {
                ExecStatus::Exited => format!("status {}", result.exit_code),
                ExecStatus::Signaled => format!("signal {}", result.signal.unwrap_or(0)),
                _ => "no start".to_owned(),
            };
            Err(format!("it ended with {code}: {}", quote(said.trim())))
        }
    }
}

/// `text` cut to [`QUOTED_BYTES`] and quoted, its control characters
/// escaped.
fn quote(text: &str) -> String {
    let mut end = text.len().min(QUOTED_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { "…" } else { "" };
    format!("{:?}{cut}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_users_name_a_uid_when_they_can() {
        assert_eq!(container_uid(""), Some(0));
        assert_eq!(container_uid("root"), Some(0));
        assert_eq!(container_uid("root:wheel"), Some(0));
        assert_eq!(container_uid("1000"), Some(1000));
        assert_eq!(container_uid("1000:1000"), Some(1000));
        assert_eq!(container_uid("0:5"), Some(0));
        assert_eq!(container_uid("app"), None);
        assert_eq!(container_uid("app:1000"), None);
    }

    #[test]
    fn only_a_container_user_other_than_a_caller_other_than_root_hands_back() {
        // The caller is root: nothing to hand back, whoever the container runs as.
        assert_eq!(HandBack::needed("", 0), None);
        assert_eq!(HandBack::needed("4242:4242", 0), None);
        // The container runs as the caller (evaluation mode, or a user
        // set to the caller's uid): nothing either.
        assert_eq!(HandBack::needed("1000:1000", 1000), None);
        assert_eq!(HandBack::needed("1000:5", 1000), None);
        // The image's root, another uid, or a name.
        for user in ["", "root", "0:0", "4242:4242", "app"] {
            let hand_back = HandBack::needed(user, 1000).expect(user);
            assert_eq!(hand_back.uid(), 1000, "{user}");
        }
    }

    #[test]
    fn the_script_carries_the_uid_and_checks_only_at_cleanup() {
        let hand_back = HandBack { uid: 65534 };
        let after = hand_back.script(Moment::AfterCommand);
        assert!(after.starts_with("u=65534 verify=0\n"), "{after}");
        let last = hand_back.script(Moment::AtCleanup);
        assert!(last.starts_with("u=65534 verify=1\n"), "{last}");
        // Never a flag that follows symlinks.
        for flag in [" -L", " -H", "-follow"] {
            assert!(!SCRIPT.contains(flag), "{flag}");
        }
        assert!(SCRIPT.contains(&format!("exit {NOT_HANDED_BACK}")));
        assert!(SCRIPT.contains(&format!("exit {LOST_ITS_PLACE}")));
    }

    #[test]
    fn failures_say_what_is_left() {
        let mut result =
            ExecResult::spawn_failed("docker: creating the exec: boom", Duration::ZERO);
        let message = outcome(&result).unwrap_err();
        assert!(message.contains("boom"), "{message}");
        result.status = ExecStatus::Exited;
        result.exit_code = NOT_HANDED_BACK;
        result.stdout.bytes = b"/proc/self/fd/3/./d/d/x\ny".to_vec();
        let message = outcome(&result).unwrap_err();
        assert!(message.contains(r#"(deep) …/d/d/x\ny"#), "{message}");
        result.exit_code = LOST_ITS_PLACE;
        let message = outcome(&result).unwrap_err();
        assert!(message.contains("moved"), "{message}");
        result.status = ExecStatus::TimedOut;
        let message = outcome(&result).unwrap_err();
        assert!(message.contains("within 60s"), "{message}");
        result.status = ExecStatus::Exited;
        result.exit_code = 0;
        assert_eq!(outcome(&result), Ok(()));
        assert_eq!(
            quote(&"é".repeat(150))
                .chars()
                .filter(|c| *c == 'é')
                .count(),
            100
        );
    }
}
