//! Merging a contiguous run of LTX files into one.

use std::io::{Read, Write};

use super::{Decoder, Encoder, Header, PageEncoding, HEADER_FLAG_NO_CHECKSUM};
use crate::error::{Error, Result};

/// Merges `inputs` (oldest first, each with a name for error messages) into one LTX file
/// written to `out`, the way ltx's `Compactor` does:
///
/// * page sizes must match, and each input must continue the previous one
///   (`min <= prev_max + 1 && max > prev_max`: overlap is allowed, gaps are not);
/// * for each page the copy from the latest input wins;
/// * pages past the last input's commit size are dropped (the database shrank);
/// * the output covers `first.min ..= last.max` with the last input's commit and timestamp;
/// * every input's file checksum is verified.
///
/// Returns the writer and the output header.
pub fn compact<R: Read, W: Write>(
    inputs: Vec<(String, Decoder<R>)>,
    out: W,
    encoding: PageEncoding,
) -> Result<(W, Header)> {
    let (first, last) = match (inputs.first(), inputs.last()) {
        (Some(f), Some(l)) => (f.1.header().clone(), l.1.header().clone()),
        _ => {
            return Err(Error::Invalid(
                "compaction needs at least one input file".into(),
            ))
        }
    };
    let mut prev_max = None;
    for (name, d) in &inputs {
        let h = d.header();
        if h.page_size != first.page_size {
            return Err(Error::Invalid(format!(
                "input files have mismatched page sizes: {name} has {}, {} has {}",
                h.page_size, inputs[0].0, first.page_size
            )));
        }
        if let Some(pm) = prev_max {
            let pm: u64 = pm;
            if !(h.min_txid.0 <= pm + 1 && h.max_txid.0 > pm) {
                return Err(Error::NonContiguous {
                    have: super::Txid(pm),
                    next: h.min_txid,
                    file: name.clone(),
                });
            }
        }
        prev_max = Some(h.max_txid.0);
    }
    let header = Header {
        flags: HEADER_FLAG_NO_CHECKSUM,
        page_size: first.page_size,
        commit: last.commit,
        min_txid: first.min_txid,
        max_txid: last.max_txid,
        timestamp: last.timestamp,
        pre_apply_checksum: 0,
        ..Header::default()
    };
    let mut enc = Encoder::new(out, &header, encoding)?;
    let page_size = first.page_size as usize;
    let n = inputs.len();
    let mut names = Vec::with_capacity(n);
    let mut decs = Vec::with_capacity(n);
    for (name, d) in inputs {
        names.push(name);
        decs.push(d);
    }
    let mut bufs = vec![vec![0u8; page_size]; n];
    let mut heads: Vec<Option<u32>> = Vec::with_capacity(n);
    for i in 0..n {
        heads.push(
            decs[i]
                .next_page(&mut bufs[i])
                .map_err(|e| e.in_file(&names[i]))?,
        );
    }
    while let Some(&min) = heads.iter().flatten().min() {
        // The latest input holding this page wins.
        let winner = (0..n).rev().find(|&i| heads[i] == Some(min)).unwrap_or(0);
        if min <= header.commit {
            enc.write_page(min, &bufs[winner])
                .map_err(|e| e.in_file(&names[winner]))?;
        }
        for i in 0..n {
            if heads[i] == Some(min) {
                heads[i] = decs[i]
                    .next_page(&mut bufs[i])
                    .map_err(|e| e.in_file(&names[i]))?;
            }
        }
    }
    for (d, name) in decs.into_iter().zip(&names) {
        d.finish().map_err(|e| e.in_file(name))?;
    }
    let (w, _) = enc.finish()?;
    Ok((w, header))
}
