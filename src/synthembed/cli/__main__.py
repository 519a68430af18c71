from synthembed.cli import app

app()
