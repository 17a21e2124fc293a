"""The chat request pipeline, free of HTTP: route, pick the policy, stream, enforce, audit."""
