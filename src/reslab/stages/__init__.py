"""One module per DVC stage: each `main()` reads params and files, calls the stage's pure function, writes outputs."""
