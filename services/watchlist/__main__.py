from services.watchlist.server import main

main()
