# Written by probmoe. Re-plot with `gnuplot active_per_layer.gp` in this directory.
set encoding utf8
do for [format in 'png svg'] {
if (format eq 'png') {
    if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {
        set terminal pngcairo size 1000,650 noenhanced font 'sans,12'
    } else {
        set terminal png truecolor size 1000,650 noenhanced
    }
} else {
    set terminal svg size 1000,650 dynamic noenhanced font 'sans,12' background rgb 'white'
}
set output 'active_per_layer.'.format
set grid back lc rgb '#dddddd'
set yrange [0:2.75663]
set title 'Mean active experts per layer'
set xlabel 'layer'
set ylabel 'active experts per token'
set grid noxtics ytics
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border rgb 'black'
set boxwidth 0.9
set key inside top center horizontal box opaque samplen 2
plot \
  'active_per_layer.dat' using 2:xtic(1) lc rgb '#000072B2' title 'topk', \
  'active_per_layer.dat' using 3 lc rgb '#00D55E00' title 'topk-lb', \
  'active_per_layer.dat' using 4 lc rgb '#00009E73' title 'probmoe', \
  'active_per_layer.dat' using 5 lc rgb '#00CC79A7' title 'probmoe-dyn', \
  'active_per_layer.dat' using 6 lc rgb '#00E69F00' title 'densemixer', \
  'active_per_layer.dat' using 7 lc rgb '#0056B4E9' title 'softmoe'
unset output
}
