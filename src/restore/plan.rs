//! Restore planning: which LTX files, in which order, rebuild the database at a TXID or a
//! point in time (Litestream v0.5.8+'s algorithm). [`plan_files`] is pure (fuzzed);
//! [`plan`] lists the replica first.

use std::time::SystemTime;

use crate::client::{list_all, FileInfo, ReplicaClient, SNAPSHOT_LEVEL};
use crate::error::{Error, Result};
use crate::ltx::Txid;

fn candidate_better(curr: &FileInfo, next: &FileInfo) -> bool {
    if next.max_txid != curr.max_txid {
        return next.max_txid > curr.max_txid;
    }
    if next.min_txid != curr.min_txid {
        return next.min_txid < curr.min_txid;
    }
    if next.level != curr.level {
        return next.level > curr.level;
    }
    next.created_at < curr.created_at
}

/// Chooses the files to restore from a listing of the replica (any order, any levels).
///
/// This is the pure part of [`plan`]; it never touches the network.
pub fn plan_files(
    listing: &[FileInfo],
    txid: Option<Txid>,
    timestamp: Option<SystemTime>,
) -> Result<Vec<FileInfo>> {
    if txid.is_some() && timestamp.is_some() {
        return Err(Error::Invalid(
            "cannot specify both a txid and a timestamp to restore".into(),
        ));
    }
    let mut levels: Vec<Vec<&FileInfo>> = vec![Vec::new(); SNAPSHOT_LEVEL as usize + 1];
    for f in listing {
        if f.level <= SNAPSHOT_LEVEL && f.min_txid.0 >= 1 && f.min_txid <= f.max_txid {
            levels[f.level as usize].push(f);
        }
    }
    for l in levels.iter_mut() {
        l.sort_by_key(|f| (f.min_txid, f.max_txid));
    }
    let eligible = |f: &FileInfo| {
        txid.is_none_or(|t| f.max_txid <= t) && timestamp.is_none_or(|ts| f.created_at < ts)
    };

    let mut plan: Vec<FileInfo> = Vec::new();
    let mut cur = Txid::ZERO;
    if let Some(s) = levels[SNAPSHOT_LEVEL as usize]
        .iter()
        .rfind(|f| eligible(f) && f.min_txid == Txid(1))
    {
        plan.push((*s).clone());
        cur = s.max_txid;
        if txid.is_some_and(|t| cur >= t) {
            return Ok(plan);
        }
    }

    // One cursor per level 8..=0: position in the level and the best candidate seen.
    let mut pos = [0usize; SNAPSHOT_LEVEL as usize];
    let mut cand: [Option<&FileInfo>; SNAPSHOT_LEVEL as usize] = [None; SNAPSHOT_LEVEL as usize];
    loop {
        let mut best: Option<usize> = None;
        for level in (0..SNAPSHOT_LEVEL as usize).rev() {
            if cand[level].is_some_and(|c| c.max_txid <= cur) {
                cand[level] = None;
            }
            let files = &levels[level];
            while pos[level] < files.len() && files[pos[level]].min_txid.0 <= cur.0 + 1 {
                let f = files[pos[level]];
                pos[level] += 1;
                if f.max_txid <= cur || !eligible(f) {
                    continue;
                }
                if cand[level].is_none_or(|c| candidate_better(c, f)) {
                    cand[level] = Some(f);
                }
            }
            if let Some(c) = cand[level] {
                let better = match best {
                    None => true,
                    Some(b) => cand[b].is_some_and(|bc| candidate_better(bc, c)),
                };
                if better {
                    best = Some(level);
                }
            }
        }
        let Some(level) = best else { break };
        let Some(f) = cand[level].take() else { break };
        cur = f.max_txid;
        plan.push(f.clone());
        if txid.is_some_and(|t| cur >= t) {
            break;
        }
    }

    // A file the target allows that the chain cannot reach is a gap: stopping short would
    // restore an older state than asked, silently (with a TXID target, the check after
    // this one says so).
    if !plan.is_empty() && txid.is_none() {
        for level in 0..SNAPSHOT_LEVEL as usize {
            let rest = levels[level].get(pos[level]..).unwrap_or_default();
            if let Some(next) = rest.iter().find(|f| eligible(f)) {
                if next.min_txid.0 > cur.0 + 1 {
                    return Err(Error::NonContiguous {
                        have: cur,
                        next: next.min_txid,
                        file: format!("level {level} {}", next.name()),
                    });
                }
            }
        }
    }

    if plan.is_empty() {
        let has_start = levels.iter().flatten().any(|f| f.min_txid == Txid(1));
        if !has_start {
            return Err(Error::NoSnapshots);
        }
        let detail = match (txid, timestamp) {
            (Some(t), _) => format!("no snapshot at or before transaction {t}"),
            (_, Some(ts)) => format!(
                "no backup files were created before {}",
                crate::time::format_rfc3339(ts)
            ),
            _ => "no restorable files".to_string(),
        };
        return Err(Error::TxNotAvailable { txid, detail });
    }
    if let Some(t) = txid {
        if cur < t {
            return Err(Error::TxNotAvailable {
                txid: Some(t),
                detail: format!("the replica's files reach only {cur}"),
            });
        }
    }
    Ok(plan)
}

/// Chooses the files to restore to `txid` / `timestamp` (both `None`: the latest state).
pub fn plan(
    client: &dyn ReplicaClient,
    txid: Option<Txid>,
    timestamp: Option<SystemTime>,
) -> Result<Vec<FileInfo>> {
    let listing = list_all(client, timestamp.is_some(), &|| ())?;
    plan_files(&listing, txid, timestamp)
}
