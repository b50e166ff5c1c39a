"""Vendor fakes: real HTTP servers on loopback that follow each vendor's published API."""
