"""The chat agent over one patient: manifest -> choose tools -> call them -> facts -> a cited answer."""
