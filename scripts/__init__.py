"""Stage scripts that run inside CodeBuild (and from a developer's laptop with the same arguments)."""
