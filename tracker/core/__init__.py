"""Pure decisions and records: no Redis, no HTTP, no asyncio I/O; tested directly."""
