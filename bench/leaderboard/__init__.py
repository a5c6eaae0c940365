"""Leaderboard statistics: per-image scores to means, confidence intervals, paired-test ranks;
costs; agreement between metrics; merging and comparing runs. Pure pandas, no torch work."""
