"""Test doubles at the transport boundary: a real HTTP target on 127.0.0.1, a fake clock."""
