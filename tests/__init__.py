"""Tests for mailpipe (an importable package so that tests.peers.* can be imported)."""
