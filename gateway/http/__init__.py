"""The HTTP edge: Litestar controllers, OpenAI wire types, SSE framing, the error mapping table.

The only package that knows HTTP. Controllers stay thin: parse, call a service, frame the answer.
"""
