"""Tests of the search-space format, the shipped spaces and the spaces CLI."""
