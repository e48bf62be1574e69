"""Surfaces: the CLI, the MCP server and the demo (thin skins over the service API)."""
