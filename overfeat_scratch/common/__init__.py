"""What every layer of the package shares: argument checks, atomic file writes,
figure helpers and the allocator setting. Imports nothing from the rest of the
package."""
