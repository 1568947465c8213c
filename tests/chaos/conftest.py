def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", default=False,
                     help="run the chaos suite at full size (300 announcements, 20 worker kills)")
