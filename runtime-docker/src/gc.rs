//! Finding and removing containers whose owner is gone.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use session_core::runtime::Leftover;

use crate::container::{
    self, LABEL_KEEP, LABEL_LEASE_DEADLINE, LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_SESSION,
    host_name,
};
use crate::engine::{backend_error, describe};

/// Why a berth container counts as left behind, or `None` while its owner
/// may still use it.
///
/// On the owner's host the owner's pid decides (the lease is not renewed,
/// so it would reap long sessions); on another host, where that pid means
/// nothing, the lease deadline decides. Containers kept on purpose
/// (`keep_container_after_clean`) and containers whose labels cannot be
/// read are left alone.
pub(crate) fn left_behind(
    labels: &HashMap<String, String>,
    this_host: &str,
    now_secs: u64,
) -> Option<String> {
    if labels.get(LABEL_KEEP).is_some_and(|v| v == "true") {
        return None;
    }
    let owner_host = labels.get(LABEL_OWNER_HOST)?;
    if owner_host == this_host {
        let pid: i32 = labels.get(LABEL_OWNER_PID)?.parse().ok()?;
        return (!process_alive(pid)).then(|| format!("owner pid {pid} is gone"));
    }
    let deadline: u64 = labels.get(LABEL_LEASE_DEADLINE)?.parse().ok()?;
    (deadline < now_secs).then(|| {
        format!(
            "lease of owner on `{owner_host}` expired {}s ago",
            now_secs - deadline
        )
    })
}

/// Whether a process with this pid exists on this host.
pub(crate) fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to someone else.
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Lists berth's containers on the engine and removes (unless `dry_run`)
/// those [`left_behind`] says are.
pub(crate) async fn collect(docker: &Docker, dry_run: bool) -> session_core::Result<Vec<Leftover>> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![LABEL_SESSION.to_owned()],
        )])),
        ..ListContainersOptions::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|err| backend_error(format!("listing containers: {}", describe(&err))))?;
    let this_host = host_name();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut leftovers = Vec::new();
    for summary in containers {
        let (Some(id), Some(labels)) = (summary.id, summary.labels) else {
            continue;
        };
        let Some(reason) = left_behind(&labels, &this_host, now) else {
            continue;
        };
        let name = summary
            .names
            .and_then(|names| names.into_iter().next())
            .map(|name| name.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let short: String = id.chars().take(12).collect();
        let removed = if dry_run {
            false
        } else {
            match container::remove(docker, &id).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::warn!(container = %short, error = %err, "removing a leftover container failed");
                    false
                }
            }
        };
        leftovers.push(Leftover {
            kind: "container".to_owned(),
            id: if name.is_empty() {
                short
            } else {
                format!("{short} ({name})")
            },
            reason,
            removed,
        });
    }
    Ok(leftovers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn owners_on_this_host_are_judged_by_their_pid() {
        let me = std::process::id().to_string();
        let alive = labels(&[
            (LABEL_SESSION, "s"),
            (LABEL_OWNER_HOST, "here"),
            (LABEL_OWNER_PID, &me),
            (LABEL_LEASE_DEADLINE, "1"),
        ]);
        assert_eq!(left_behind(&alive, "here", 100), None);
        let mut dead = alive;
        dead.insert(LABEL_OWNER_PID.into(), i32::MAX.to_string());
        assert!(left_behind(&dead, "here", 100).unwrap().contains("is gone"));
        dead.insert(LABEL_KEEP.into(), "true".into());
        assert_eq!(left_behind(&dead, "here", 100), None);
    }

    #[test]
    fn owners_elsewhere_are_judged_by_their_lease() {
        let remote = labels(&[
            (LABEL_SESSION, "s"),
            (LABEL_OWNER_HOST, "there"),
            (LABEL_OWNER_PID, "1"),
            (LABEL_LEASE_DEADLINE, "50"),
        ]);
        assert_eq!(left_behind(&remote, "here", 40), None);
        assert!(
            left_behind(&remote, "here", 60)
                .unwrap()
                .contains("expired 10s ago")
        );
        let unreadable = labels(&[(LABEL_SESSION, "s")]);
        assert_eq!(left_behind(&unreadable, "here", 60), None);
    }
}
