"""The command line (`actorscoop ...`, `python -m actorscoop`) and the launchers: start/stop/status/logs, `up`/`down` over hosts."""
