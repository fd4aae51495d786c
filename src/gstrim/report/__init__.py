"""What a sweep is read as: its table (CSV, Markdown, JSON), figures (matplotlib) and one HTML page."""
