"""The Dockerfile builder: pure front end (parser, instructions, variable
substitution, .dockerignore) and, on top of it, the executor."""
