"""What every layer of the package shares: argument checks, atomic file writes and
figure helpers. Imports nothing from the rest of the package."""
