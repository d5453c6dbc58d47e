"""Evaluation: metrics, intervals and paired tests, the TF-IDF reference, reports, sweep leaderboards."""
