"""The leaderboard: entries, validation, storage, ranking and rendering (markdown and a static page)."""
