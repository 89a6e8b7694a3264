//! "Did you mean" suggestions for misspelt names.

/// The candidate closest to `found`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    found: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let found_lower = found.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = strsim::jaro_winkler(&found_lower, &candidate.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("metirc", ["source", "metric"]),
            Some("metric".into())
        );
        assert_eq!(
            did_you_mean("dimension", ["where", "dimensions"]),
            Some("dimensions".into())
        );
        assert_eq!(did_you_mean("zzz", ["source", "metric"]), None);
    }
}
