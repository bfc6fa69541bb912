"""Faces, Live Link, expression heads, body animation and VMC for Bert-VITS2 speech."""
