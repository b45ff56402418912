"""Black-box tests of documented promises: through `pipeline serve`, SMTP, the CLI and HTTP."""
